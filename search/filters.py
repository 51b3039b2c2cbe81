"""Which photos may answer a query, as the user typed it (CLI options, HTTP parameters, the page's fields),
checked and turned into the catalog's terms (``clipsearch.store.metadata.Criteria``).

    within      a folder, as the user means it: a link to an indexed folder (or into one) stands for it
    tags        every one of these tags
    after       a date or datetime (ISO 8601: 2023-01-01, 2023-01-01T18:00), on the date taken, inclusive
    before      the same, exclusive; a bare date counts the whole day (--before 2023-12-31 keeps Dec 31)
    camera      part of the camera's make and model, any case ("pixel 6", "canon")
    types       file types: jpg (also .jpeg, .jpe, .jfif), png, webp, heic (also .heif), tif (also .tiff), ...
    min_pixels  at least this many pixels: 2000000, 2M, 12MP or 1920x1080
    near        LAT,LON,RADIUS: 46.5,7.9,30km (km, m or mi; km when no unit)
    people      every one of these people is in the photo: a name (any case) or a person's id
                (``clipsearch people``); one that names nobody is a mistake, said in one line
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from clipsearch.errors import UserError
from clipsearch.store.metadata import Criteria

if TYPE_CHECKING:
    from clipsearch.store import StoreReader

_TYPES = {"jpg": (".jpg", ".jpeg", ".jpe", ".jfif"), "jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
          "tif": (".tif", ".tiff"), "tiff": (".tif", ".tiff"), "heic": (".heic", ".heif"), "heif": (".heic", ".heif")}
_UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344}
MAX_PIXELS = 10**15
MAX_CAMERA = 200  # characters: longer than any camera's make and model


def _moment(text: str, option: str, end_of_day: bool) -> str:
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return (day + timedelta(days=1) if end_of_day else day).isoformat()
        return datetime.fromisoformat(value).replace(tzinfo=None).isoformat()
    except ValueError:
        raise UserError(f"{option} must be a date or a date and time (2023-12-31, 2023-12-31T18:00), not "
                        f"{text[:40]!r}") from None


def _pixels(text: str) -> int:
    value = text.strip().lower().replace(" ", "")
    match = re.fullmatch(r"(\d{1,9})x(\d{1,9})", value)
    if match:
        pixels = int(match.group(1)) * int(match.group(2))
    else:
        match = re.fullmatch(r"(\d{1,30}(?:\.\d{1,9})?)(mp|m|k)?", value)
        if not match:
            raise UserError(f"--min-pixels must be a count (2000000, 2M, 12MP) or a size (1920x1080), not "
                            f"{text[:40]!r}")
        pixels = int(float(match.group(1)) * {"mp": 1e6, "m": 1e6, "k": 1e3}.get(match.group(2) or "", 1))
    if pixels > MAX_PIXELS:  # SQLite's integers end at 2**63; no photo comes near this
        raise UserError(f"--min-pixels {text[:40]!r} is more than any photo has (at most {MAX_PIXELS:,})")
    return pixels


def _near(text: str) -> tuple[float, float, float]:
    parts = [p.strip() for p in text.split(",")]
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(km|m|mi)?", parts[2].lower()) if len(parts) == 3 else None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except (ValueError, IndexError):
        match = None
    if match is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UserError(f"--near must be LATITUDE,LONGITUDE,RADIUS (46.5,7.9,30km; km, m or mi), not {text[:60]!r}")
    return lat, lon, float(match.group(1)) * _UNITS[match.group(2) or "km"]


def _extensions(types: tuple[str, ...]) -> tuple[str, ...]:
    """The file name endings of ``types``; a type clipsearch never indexes is a mistake, said as one, rather than
    a search that quietly finds nothing."""
    from clipsearch.images import EXTENSIONS, PLUGIN_EXTENSIONS
    from clipsearch.video import EXTENSIONS as VIDEOS

    indexed = EXTENSIONS | VIDEOS | set(PLUGIN_EXTENSIONS) | {".avif"}  # whatever this machine's plugins: an index may hold them
    out: list[str] = []
    for kind in types:
        name = kind.strip().lower().lstrip(".")
        if not re.fullmatch(r"[a-z0-9]{1,8}", name):
            raise UserError(f"--type must be a file type such as jpg, png or heic, not {kind[:20]!r}")
        endings = _TYPES.get(name, (f".{name}",))
        if not indexed.intersection(endings):
            known = sorted({e.lstrip(".") for e in indexed} - {"jpeg", "jpe", "jfif", "tiff", "heif"})
            raise UserError(f"--type {kind.strip()[:20]}: clipsearch indexes no such files (types: {', '.join(known)})")
        out.extend(endings)
    return tuple(dict.fromkeys(out))


def _people(people: tuple[str, ...]) -> tuple[int, ...]:
    """Checks what ``--person`` gives (a name or an id); who they are is the index's to say (``Filters.passing``)."""
    from clipsearch.store.people import MAX_NAME

    for person in people:
        if not person.strip():
            raise UserError("--person needs a name or a person's id ('clipsearch people' lists them)")
        if len(person) > MAX_NAME:
            raise UserError(f"--person: a person's name is at most {MAX_NAME} characters")
    return ()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def folder_in_index(folder: str, roots: list[str]) -> str:
    """The folder ``folder`` names, as the index spells its paths: the indexed folders (roots) are kept as they
    were given and the paths under them as reached from there, links unresolved, so a link to an indexed folder
    (or to a folder in one, or above one) is turned into the indexed path it stands for. A folder that is in the
    index as given is kept as given."""
    given = os.path.abspath(os.path.expanduser(folder))
    real = os.path.realpath(given)
    for root in roots:
        if _inside(root, given):  # an indexed folder lies inside it: kept as given
            return given
        # in an indexed folder as given, through no link below it (a link inside one is mapped below: the walk keeps
        # each file under its path without a link)
        if _inside(given, root) and real == os.path.normpath(os.path.join(os.path.realpath(root),
                                                                          os.path.relpath(given, root))):
            return given
    real_roots = [(root, os.path.realpath(root)) for root in roots]
    for root, real_root in sorted(real_roots, key=lambda pair: -len(pair[1])):
        if _inside(real, real_root):  # the folder is (in) an indexed folder reached another way
            rest = os.path.relpath(real, real_root)
            return root if rest == "." else os.path.join(root, rest)
    below = [root for root, real_root in real_roots if _inside(real_root, real)]  # indexed folders inside it
    if below and all(_inside(root, real) for root in below):
        return real
    if len(below) == 1:
        return below[0]
    return given


@dataclass(frozen=True)
class Filters:
    """Which photos may answer: everything, or those that pass every filter given."""

    within: str | None = None
    tags: tuple[str, ...] = ()
    after: str | None = None
    before: str | None = None
    camera: str | None = None
    types: tuple[str, ...] = ()
    min_pixels: str | None = None
    near: str | None = None
    people: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.criteria()  # a Filters is valid once made: a mistake (a date that is none) is one line, before any work

    def criteria(self) -> Criteria:
        """The filters checked (a mistake is one line) and in the catalog's terms."""
        camera = self.camera.strip() if self.camera is not None else None
        if camera == "":
            raise UserError("--camera needs part of a camera's name (e.g. 'Pixel 6')")
        if camera is not None and len(camera) > MAX_CAMERA:
            raise UserError(f"--camera is {len(camera):,} characters: a camera's name is at most {MAX_CAMERA}")
        after = _moment(self.after, "--after", False) if self.after is not None else None
        before = _moment(self.before, "--before", True) if self.before is not None else None
        if after is not None and before is not None and datetime.fromisoformat(after) >= datetime.fromisoformat(before):
            raise UserError(f"--after {str(self.after).strip()[:40]} is not before --before "
                            f"{str(self.before).strip()[:40]}: no photo can be taken in that range")
        return Criteria(
            within=os.path.abspath(os.path.expanduser(self.within)) if self.within is not None else None,
            tags=tuple(t.strip() for t in self.tags if t.strip()),
            after=after,
            before=before,
            camera=camera,
            extensions=_extensions(self.types),
            min_pixels=_pixels(self.min_pixels) if self.min_pixels is not None else None,
            near=_near(self.near) if self.near is not None else None,
            people=_people(self.people),
        )

    def passing(self, store: StoreReader, dates: bool = True) -> list[tuple[int, str | None]] | None:
        """(id, date taken) of the photos that pass, from the snapshot being read; None when every photo passes.
        Without ``dates``, the dates are None (cheaper)."""
        criteria = self.criteria()
        if criteria.within is not None and self.within is not None:
            criteria = replace(criteria, within=folder_in_index(self.within, store.catalog.roots()))
        if self.people:  # the people named now (names change without a new generation)
            criteria = replace(criteria, people=tuple(store.catalog.faces.people.resolve(self.people)))
        return None if criteria.empty else store.catalog.metadata.matching(criteria, dates)

    def allowed_ids(self, store: StoreReader) -> list[int] | None:
        passing = self.passing(store, dates=False)
        return None if passing is None else [file_id for file_id, _ in passing]
