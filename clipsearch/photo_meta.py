"""What a photo's header says about it: when it was taken, with which camera and lens, and where.

Read from the EXIF block the decoders already parse for the orientation (``clipsearch.images``), so
it costs no second decode. Camera files are full of broken values (seconds = 70, year 0000, an IFD
offset past the end, GPS rationals with zero denominators, padding NULs): each field is read on its
own and a bad one is left out, never the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

_DATE = re.compile(r"\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"\s*([+-])(\d{2}):(\d{2})\s*$")
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
MAKE, MODEL, DATETIME = 0x010F, 0x0110, 0x0132
DATETIME_ORIGINAL, OFFSET_TIME, OFFSET_TIME_ORIGINAL, LENS_MODEL = 0x9003, 0x9010, 0x9011, 0xA434


@dataclass(frozen=True)
class PhotoMeta:
    taken: str | None = None  # local wall time as ISO 8601 (2023-05-01T14:03:22), "+02:00" added where EXIF says
    taken_from: str | None = None  # "DateTimeOriginal" or "DateTime"; None: nothing usable (the file's mtime serves)
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    lat: float | None = None
    lon: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value.replace("\x00", " ") if ch.isprintable()).strip()
    return " ".join(text.split())[:120] or None


def _when(value: object, offset: object) -> str | None:
    text = _text(value)
    match = _DATE.match(text or "")
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if not 1826 <= year <= 2200:  # the first photograph; anything else is a camera that lost its clock
        return None
    try:
        stamp = datetime(year, month, day, hour, minute, second).isoformat()
    except ValueError:  # month 13, seconds 70, 31 February
        return None
    zone = _OFFSET.match(_text(offset) or "")
    if zone is not None and int(zone.group(2)) <= 14 and int(zone.group(3)) < 60:
        stamp += f"{zone.group(1)}{zone.group(2)}:{zone.group(3)}"
    return stamp


def _degrees(value: object, ref: object) -> float | None:
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if not 1 <= len(parts) <= 3:
        return None
    total = 0.0
    for part, scale in zip(parts, (1, 60, 3600)):
        number = float(part)  # a rational with a zero denominator is nan (Pillow) or raises: the field is dropped
        if not math.isfinite(number) or number < 0:
            return None
        total += number / scale
    side = _text(ref) or ""
    return -total if side.upper().startswith(("S", "W")) else total


def _field(read: Any) -> Any:
    try:
        return read()
    except Exception:  # noqa: BLE001 - one bad field costs that field only
        return None


def from_exif(exif: Any) -> PhotoMeta:
    """``exif``: a Pillow ``Image.Exif`` (``im.getexif()``)."""
    main = _field(lambda: dict(exif)) or {}
    detail = _field(lambda: dict(exif.get_ifd(_EXIF_IFD))) or {}
    gps = _field(lambda: dict(exif.get_ifd(_GPS_IFD))) or {}
    taken, source = None, None
    original = _field(lambda: _when(detail.get(DATETIME_ORIGINAL), detail.get(OFFSET_TIME_ORIGINAL)))
    if original is not None:
        taken, source = original, "DateTimeOriginal"
    else:
        plain = _field(lambda: _when(main.get(DATETIME), detail.get(OFFSET_TIME)))
        if plain is not None:
            taken, source = plain, "DateTime"
    lat = _field(lambda: _degrees(gps[2], gps.get(1)))
    lon = _field(lambda: _degrees(gps[4], gps.get(3)))
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
        lat = lon = None  # no fix (0, 0 is what a phone without one writes), or nonsense
    return PhotoMeta(taken, source, _field(lambda: _text(main.get(MAKE))), _field(lambda: _text(main.get(MODEL))),
                     _field(lambda: _text(detail.get(LENS_MODEL))), lat, lon)


def read(source: bytes | str) -> PhotoMeta:
    """The metadata in an image's header (``source``: the file's bytes, or its path, read only as far as the
    header goes): for photos indexed before metadata was kept (the backfill) and for query images. No decode."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                return from_exif(im.getexif())
    except Exception:  # noqa: BLE001 - a header that cannot be read has no metadata
        return PhotoMeta()
