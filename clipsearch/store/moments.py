"""The videos and moments tables (format 13, ``migrations._videos``): a video's container facts and its moments, per content.

A video is one file row like a photo: its vector (``vectors``, keyed by the video's content hash) is the mean of
its moments' vectors, which is what duplicates, classification, tags and "more like this" use. Each moment (a
sampled frame, ``clipsearch.video``) is a row (content hash, n, t seconds) whose own vector is stored under a
hash derived from the video's (``moment_digest``), in the same segments. Per content, like every other table: a
renamed or copied video keeps its moments without decoding anything.

In the FAISS index a moment of the file ``file_id`` has the id ``moment_id(file_id, n)``: ``FLAG`` set, the file
id above ``SHIFT`` bits, n below. A search maps each id back with ``split`` and shows a video once, at its best
moment. The large index (``clipsearch.store.large_index``) holds files only: there a video is found by its mean.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from clipsearch.store.migrations import OptionalTable

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.video import Facts

FLAG = 1 << 56  # set in every moment's FAISS id; file ids stay far below it
SHIFT = 16  # bits for n: at most 65,536 moments a video (clipsearch.video.Rule keeps ~100)
_IN_CHUNK = 500


def moment_id(file_id: int, n: int) -> int:
    return FLAG | (int(file_id) << SHIFT) | int(n)


def split(faiss_id: int) -> tuple[int, int | None]:
    """(file id, moment number or None for the file's own vector) of an id in the FAISS index."""
    if faiss_id & FLAG:
        rest = faiss_id & ~FLAG
        return rest >> SHIFT, rest & ((1 << SHIFT) - 1)
    return faiss_id, None


def moment_digest(video: bytes, n: int) -> bytes:
    """The content hash a moment's vector is stored under: derived from the video's, so copies share it."""
    return hashlib.sha256(b"clipsearch-moment\0" + video + int(n).to_bytes(4, "little")).digest()[:16]


class MomentReader(OptionalTable):
    """Reads for searches and the writer; an older catalog (a read-only mount) has no videos and reads empty."""

    TABLE = "moments"

    def ids_of(self, file_ids: Iterable[int]) -> list[int]:
        """The FAISS ids of the moments of these files."""
        if not self.available:
            return []
        ids = [int(i) for i in file_ids]
        out: list[int] = []
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            out.extend(moment_id(f, n) for f, n in self._conn.execute(
                f"SELECT files.id, moments.n FROM files JOIN moments ON moments.hash = files.hash "
                f"WHERE files.id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def all_ids(self) -> set[int]:
        if not self.available:
            return set()
        return {moment_id(f, n) for f, n in self._conn.execute(
            "SELECT files.id, moments.n FROM files JOIN moments ON moments.hash = files.hash")}

    def count(self) -> int:
        if not self.available:
            return 0
        return int(self._conn.execute("SELECT count(*) FROM files JOIN moments ON moments.hash = files.hash")
                   .fetchone()[0])

    def times(self, file_ids: Iterable[int]) -> dict[int, dict[int, float]]:
        """file id -> {n: t} for the videos among ``file_ids``."""
        if not self.available:
            return {}
        ids = [int(i) for i in file_ids]
        out: dict[int, dict[int, float]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for f, n, t in self._conn.execute(
                    f"SELECT files.id, moments.n, moments.t FROM files JOIN moments ON moments.hash = files.hash "
                    f"WHERE files.id IN ({','.join('?' * len(chunk))})", chunk):
                out.setdefault(int(f), {})[int(n)] = float(t)
        return out

    def times_of(self, video: bytes) -> list[float]:
        """The times of a content's moments, in order (none: a photo); the words stage reads the frames there."""
        if not self.available:
            return []
        return [float(t) for (t,) in self._conn.execute("SELECT t FROM moments WHERE hash = ? ORDER BY n", (video,))]

    def facts(self, file_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """file id -> {"duration", "codec", "fps", "moments"} for the videos among ``file_ids``."""
        if not self.available:
            return {}
        ids = [int(i) for i in file_ids]
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for f, duration, codec, fps, count in self._conn.execute(
                    f"SELECT files.id, v.duration, v.codec, v.fps, v.moments FROM files JOIN videos v ON "
                    f"v.hash = files.hash WHERE files.id IN ({','.join('?' * len(chunk))})", chunk):
                out[int(f)] = {"duration": duration, "codec": codec, "fps": fps, "moments": count}
        return out

    def video_hashes(self) -> set[bytes]:
        """The content hashes of the videos (``search.copy_rules``: a photo is never a copy of a video)."""
        if not self.available:
            return set()
        return {bytes(h) for (h,) in self._conn.execute("SELECT hash FROM videos")}

    def rows(self, select: str, file_ids: Sequence[int] | None, between: tuple[int, int]) -> list[Any]:
        """(files.id, moments.n, ``select``...) of the moments joined to their vectors: of ``file_ids``, or of every
        file with an id ``between`` the two."""
        if not self.available:
            return []
        base = (f"SELECT files.id, moments.n, {select} FROM files JOIN moments ON moments.hash = files.hash "
                "JOIN vectors ON vectors.hash = moments.moment")
        if file_ids is None:
            return self._conn.execute(f"{base} WHERE files.id BETWEEN ? AND ? ORDER BY files.id, moments.n",
                                      between).fetchall()
        out: list[Any] = []
        for start in range(0, len(file_ids), _IN_CHUNK):
            chunk = list(file_ids[start : start + _IN_CHUNK])
            out.extend(self._conn.execute(f"{base} WHERE files.id IN ({','.join('?' * len(chunk))})", chunk))
        return out


# -- the writer's side: ``conn`` is in the writer's open transaction ---------------------------
Video = tuple["Facts", Sequence[tuple[float, "np.ndarray"]]]  # a video's facts and its moments, (t, vector) each


def put(conn: sqlite3.Connection, digest: bytes, video: Video, store: Callable[[bytes, np.ndarray], None]) -> None:
    """Record a video's facts and its moments' times, and ``store`` each moment's vector under its own hash."""
    facts, found = video
    conn.execute("DELETE FROM moments WHERE hash = ?", (digest,))
    conn.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?)",
                 (digest, facts.duration, facts.codec, facts.fps, len(found)))
    rows = [(digest, n, float(t), moment_digest(digest, n)) for n, (t, _) in enumerate(found)]
    conn.executemany("INSERT INTO moments VALUES (?, ?, ?, ?)", rows)
    for row, (_, vector) in zip(rows, found):
        store(row[3], vector)


def count_of(conn: sqlite3.Connection, video: bytes) -> int:
    """How many moments the content has (0: a photo, or a video indexed before format 13)."""
    return int(conn.execute("SELECT count(*) FROM moments WHERE hash = ?", (video,)).fetchone()[0])


def drop_orphans(conn: sqlite3.Connection) -> None:
    """Videos and moments whose content has no file any more (their vectors go with the other orphans)."""
    conn.execute("DELETE FROM moments WHERE hash NOT IN (SELECT hash FROM files)")
    conn.execute("DELETE FROM videos WHERE hash NOT IN (SELECT hash FROM files)")


LIVE = "SELECT hash FROM files UNION ALL SELECT moment FROM moments"  # stored vectors that are in use


def ids_for(conn: sqlite3.Connection, file_id: int, video: bytes) -> list[int]:
    """The FAISS ids of the moments of the file ``file_id`` whose content is ``video`` (none for a photo)."""
    return [moment_id(file_id, n) for n in range(count_of(conn, video))]


def split_ids(ids: Iterable[int]) -> tuple[list[int], dict[int, set[int]]]:
    """FAISS ids as (file ids, {file id: moment numbers})."""
    files: list[int] = []
    wanted: dict[int, set[int]] = {}
    for i in map(int, ids):
        if i & FLAG:
            file_id, n = split(i)
            wanted.setdefault(file_id, set()).add(int(n or 0))
        else:
            files.append(i)
    return files, wanted
