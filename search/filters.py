"""Which photos may answer a query, as the user typed it (CLI options, HTTP parameters, the page's fields),
checked and turned into the catalog's terms (``clipsearch.store.metadata.Criteria``).

    within      a folder
    tags        every one of these tags
    after       a date or datetime (ISO 8601: 2023-01-01, 2023-01-01T18:00), on the date taken, inclusive
    before      the same, exclusive; a bare date counts the whole day (--before 2023-12-31 keeps Dec 31)
    camera      part of the camera's make and model, any case ("pixel 6", "canon")
    types       file types: jpg (also .jpeg, .jpe, .jfif), png, webp, heic (also .heif), tif (also .tiff), ...
    min_pixels  at least this many pixels: 2000000, 2M, 12MP or 1920x1080
    near        LAT,LON,RADIUS: 46.5,7.9,30km (km, m or mi; km when no unit)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
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
    out: list[str] = []
    for kind in types:
        name = kind.strip().lower().lstrip(".")
        if not re.fullmatch(r"[a-z0-9]{1,8}", name):
            raise UserError(f"--type must be a file type such as jpg, png or heic, not {kind[:20]!r}")
        out.extend(_TYPES.get(name, (f".{name}",)))
    return tuple(dict.fromkeys(out))


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

    def __post_init__(self) -> None:
        self.criteria()  # a Filters is valid once made: a mistake (a date that is none) is one line, before any work

    def criteria(self) -> Criteria:
        """The filters checked (a mistake is one line) and in the catalog's terms."""
        camera = self.camera.strip() if self.camera is not None else None
        if camera == "":
            raise UserError("--camera needs part of a camera's name (e.g. 'Pixel 6')")
        if camera is not None and len(camera) > MAX_CAMERA:
            raise UserError(f"--camera is {len(camera):,} characters: a camera's name is at most {MAX_CAMERA}")
        return Criteria(
            within=os.path.abspath(os.path.expanduser(self.within)) if self.within is not None else None,
            tags=tuple(t.strip() for t in self.tags if t.strip()),
            after=_moment(self.after, "--after", False) if self.after is not None else None,
            before=_moment(self.before, "--before", True) if self.before is not None else None,
            camera=camera,
            extensions=_extensions(self.types),
            min_pixels=_pixels(self.min_pixels) if self.min_pixels is not None else None,
            near=_near(self.near) if self.near is not None else None,
        )

    def passing(self, store: StoreReader, dates: bool = True) -> list[tuple[int, str | None]] | None:
        """(id, date taken) of the photos that pass, from the snapshot being read; None when every photo passes.
        Without ``dates``, the dates are None (cheaper)."""
        criteria = self.criteria()
        return None if criteria.empty else store.metadata.matching(criteria, dates)

    def allowed_ids(self, store: StoreReader) -> list[int] | None:
        passing = self.passing(store, dates=False)
        return None if passing is None else [file_id for file_id, _ in passing]
