"""The photo_meta table (format 5): each content's date taken, camera, lens and place, and the filters on them.

Per content, like vectors and tags: a renamed or copied photo keeps its metadata, and it goes with the
last file of that content. A photo without a usable EXIF date is dated by its file's mtime (``taken``
in queries is one SQL expression for both). Paths and dates compare as text: ISO 8601 local wall time,
which sorts as time does.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clipsearch.photo_meta import PhotoMeta
from clipsearch.store.migrations import OptionalTable
from clipsearch.store.paths import PATH, path_param, under

# The moment a photo was taken, as text: EXIF (without its UTC offset), else its file's mtime in local time.
FILE_TAKEN = "strftime('%Y-%m-%dT%H:%M:%S', files.mtime_ns / 1000000000, 'unixepoch', 'localtime')"
TAKEN = f"COALESCE(substr(m.taken, 1, 19), {FILE_TAKEN})"
_FROM = "files LEFT JOIN photo_meta m ON m.hash = files.hash"


def _taken(has_meta: bool) -> str:
    """The date-taken expression for a catalog with or without the photo_meta table (format 5 on)."""
    return TAKEN if has_meta else FILE_TAKEN
_EARTH_KM = 6371.0088
_IN_CHUNK = 500


@dataclass(frozen=True)
class Criteria:
    """What a filter asks, in the catalog's terms (``search.query.Filters`` makes one from what the user typed)."""

    within: str | None = None  # absolute folder
    tags: tuple[str, ...] = ()
    after: str | None = None  # ISO local time, inclusive
    before: str | None = None  # ISO local time, exclusive
    camera: str | None = None  # substring of "make model", any case
    extensions: tuple[str, ...] = ()  # ".jpg", ".jpeg", ...
    min_pixels: int | None = None
    near: tuple[float, float, float] | None = None  # latitude, longitude, radius in km

    @property
    def empty(self) -> bool:
        return self == Criteria()


def _where(criteria: Criteria, has_meta: bool) -> tuple[str, list[Any]]:
    """The WHERE clause over ``files`` (joined to ``photo_meta m`` where dates are asked). What only the metadata
    decides (camera, place) is a sub-query on photo_meta alone, so SQLite scans that table once and looks the
    files up by hash instead of joining a million rows (bench/filters.py: a narrow filter gains most)."""
    clauses: list[str] = []
    params: list[Any] = []
    meta: list[str] = []  # clauses on photo_meta alone, and their parameters
    meta_params: list[Any] = []
    if criteria.within is not None:
        lo, hi = under(criteria.within)
        clauses.append(f"((files.path >= {PATH} AND files.path < {PATH}) OR files.path = {PATH})")
        params += [path_param(lo), path_param(hi), path_param(criteria.within.rstrip(os.sep))]
    for tag in criteria.tags:
        clauses.append("files.hash IN (SELECT hash FROM tags WHERE tag = ? COLLATE NOCASE)")
        params.append(tag)
    taken = _taken(has_meta)
    if criteria.after is not None:
        clauses.append(f"{taken} >= ?")
        params.append(criteria.after)
    if criteria.before is not None:
        clauses.append(f"{taken} < ?")
        params.append(criteria.before)
    if criteria.camera is not None:
        if not has_meta:
            return "0", []
        escaped = criteria.camera.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        meta.append("(COALESCE(make, '') || ' ' || COALESCE(model, '')) LIKE ? ESCAPE '\\'")
        meta_params.append(f"%{escaped}%")
    if criteria.extensions:
        clauses.append("(" + " OR ".join("lower(files.path) LIKE ?" for _ in criteria.extensions) + ")")
        params += [f"%{ext.lower()}" for ext in criteria.extensions]
    if criteria.min_pixels is not None:
        clauses.append("files.width * files.height >= ?")
        params.append(criteria.min_pixels)
    if criteria.near is not None:
        if not has_meta:
            return "0", []
        lat, lon, km = criteria.near
        dlat = math.degrees(km / _EARTH_KM)
        meta.append("lat BETWEEN ? AND ?")
        meta_params += [lat - dlat, lat + dlat]
        if abs(lat) + dlat < 89:  # else the box holds a pole: every longitude
            dlon = math.degrees(km / (_EARTH_KM * math.cos(math.radians(abs(lat) + dlat))))
            if dlon < 180:
                meta.append("(lon BETWEEN ? AND ? OR lon BETWEEN ? AND ? OR lon BETWEEN ? AND ?)")
                meta_params += [lon - dlon, lon + dlon, lon - dlon + 360, lon + dlon + 360, lon - dlon - 360,
                                lon + dlon - 360]
    if meta:  # first: a cheap membership test that spares most rows the date expression
        clauses.insert(0, f"files.hash IN (SELECT hash FROM photo_meta WHERE {' AND '.join(meta)})")
        params = meta_params + params
    return (" AND ".join(clauses) or "1"), params


def camera_name(make: str | None, model: str | None) -> str | None:
    """"Canon PowerShot S40", not "Canon Canon PowerShot S40": many models repeat their make."""
    if make and model and model.lower().startswith(make.lower().split()[0]):
        return model
    return " ".join(p for p in (make, model) if p) or None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


class MetadataReader(OptionalTable):
    """The metadata queries of a catalog connection."""

    TABLE = "photo_meta"

    def matching(self, criteria: Criteria, dates: bool = True) -> list[tuple[int, str | None]]:
        """(id, taken) of every file that passes, in id order; without ``dates`` the date is None (not computed:
        a date per row costs more than the filter). A filter on the camera or the place needs a metadata row, so
        the join is an inner one and SQLite may start from the photo_meta table (bench/filters.py)."""
        has_meta = self.available
        where, params = _where(criteria, has_meta)
        taken = (_taken(has_meta)) if dates else "NULL"
        columns = f"files.id, {taken}" + (", m.lat, m.lon" if criteria.near is not None else "")
        joined = has_meta and (dates or criteria.after is not None or criteria.before is not None
                               or criteria.near is not None)
        rows = self._conn.execute(f"SELECT {columns} FROM {_FROM if joined else 'files'} WHERE {where}", params)
        if criteria.near is None:
            return sorted((r[0], r[1]) for r in rows)
        lat, lon, km = criteria.near
        return sorted((r[0], r[1]) for r in rows if distance_km(lat, lon, r[2], r[3]) <= km)

    def cameras(self) -> list[tuple[str, int]]:
        """Every camera with how many indexed files it took, most first (the page's camera choice)."""
        if not self.available:
            return []
        rows = self._conn.execute(f"SELECT m.make, m.model, count(*) FROM {_FROM} WHERE m.make IS NOT NULL OR "
                                  "m.model IS NOT NULL GROUP BY m.make, m.model ORDER BY count(*) DESC")
        counted: dict[str, int] = {}
        for make, model, count in rows:
            name = camera_name(make, model) or ""
            counted[name] = counted.get(name, 0) + count
        return sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))

    def of_ids(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Each file's metadata as search results carry it."""
        has_meta = self.available
        out: dict[int, dict[str, Any]] = {}
        ids = [int(i) for i in ids]
        taken = _taken(has_meta)
        extra = ", m.taken, m.taken_from, m.make, m.model, m.lens, m.lat, m.lon" if has_meta else ""
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT files.id, files.width, files.height, files.size, {taken}{extra} "
                                      f"FROM {_FROM if has_meta else 'files'} WHERE files.id IN ({marks})", chunk)
            for row in rows:
                exif_taken, source, make, model, lens, lat, lon = row[5:] if has_meta else (None,) * 7
                out[row[0]] = {
                    "taken": exif_taken or row[4], "taken_from": source or "file mtime",
                    "camera": camera_name(make, model), "lens": lens,
                    "width": row[1], "height": row[2], "size": row[3],
                    "lat": lat, "lon": lon,
                }
        return out


# -- the writer's side: ``conn`` is in the writer's open transaction ---------------------------
def put(conn: sqlite3.Connection, digest: bytes, meta: PhotoMeta) -> None:
    conn.execute("INSERT OR REPLACE INTO photo_meta VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (digest, meta.taken, meta.taken_from, meta.make, meta.model, meta.lens, meta.lat, meta.lon))


def missing(conn: sqlite3.Connection) -> list[tuple[bytes, str, int, int]]:
    """(hash, path, size, mtime_ns) of one file per indexed content that has no metadata row yet: what a backfill
    reads (the stamp tells it the file is still the content indexed)."""
    rows = conn.execute("SELECT hash, path, size, mtime_ns FROM files WHERE id IN (SELECT min(id) FROM files "
                        "WHERE hash NOT IN (SELECT hash FROM photo_meta) GROUP BY hash)").fetchall()
    return [(bytes(digest), path, size, mtime_ns) for digest, path, size, mtime_ns in rows]


def drop_orphans(conn: sqlite3.Connection) -> None:
    """Metadata of contents no file has any more (it does not depend on the model: --reindex keeps it)."""
    conn.execute("DELETE FROM photo_meta WHERE hash NOT IN (SELECT hash FROM files)")
