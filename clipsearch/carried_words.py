"""The words a photo file carries and its name says: keywords and captions a photo manager wrote, and the names a
person gave the file and its folders. People search by them (immich #30740), and CLIP never sees them.

    XMP    dc:subject (keywords), dc:title, dc:description, lr:hierarchicalSubject, photoshop:Headline
    IPTC   keywords (2:25), caption (2:120), headline (2:105), object name (2:05)
    EXIF   ImageDescription, XPKeywords / XPTitle / XPSubject / XPComment (Windows, UTF-16), UserComment
    PNG    Title, Description, Comment, Keywords text chunks

Read from the header only (Pillow parses the markers; nothing is decoded). A hostile or broken header costs its
own field: each source is read on its own, the XMP is scanned by patterns (no XML parser meets an entity bomb),
and the whole is capped at ``MAX_CHARS``.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable
from typing import Any

MAX_CHARS = 4000  # carried words kept per file: far past any real caption and keyword list
_XMP_FIELDS = ("dc:subject", "dc:title", "dc:description", "lr:hierarchicalSubject", "photoshop:Headline")
_LI = re.compile(rb"<rdf:li\b[^>]*>(.*?)</rdf:li>", re.S)
_IPTC = ((2, 5), (2, 25), (2, 105), (2, 120))
_IMAGE_DESCRIPTION, _EXIF_IFD, _USER_COMMENT = 0x010E, 0x8769, 0x9286
_XP = (0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F)  # XPTitle, XPComment, XPKeywords, XPSubject
_PNG_KEYS = ("Title", "Description", "Comment", "Keywords")
_SEPARATORS = re.compile(r"[_\-.+]+")


def names_of(path: str, roots: Iterable[str]) -> str:
    """A file's name and its folders' names below the indexed folder, as words: IMG_2041 and paris-2019 become
    "IMG 2041", "paris 2019". The indexed folder's own name ("Pictures", "photos") is every file's: it would tell
    none apart, and would match every query that names it."""
    root = max((r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)), key=len, default=os.path.dirname(path))
    parts = os.path.relpath(path, root).split(os.sep)
    parts[-1] = os.path.splitext(parts[-1])[0]
    return " ".join(" ".join(_SEPARATORS.sub(" ", part).split()) for part in parts if part)


def _clean(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value.replace("\x00", " ")).split())


def _xmp(data: bytes) -> list[str]:
    out = []
    for field in _XMP_FIELDS:
        tag = field.encode()
        for block in re.findall(rb"<" + tag + rb"\b[^>]*>(.*?)</" + tag + rb">", data[:1_000_000], re.S):
            items = _LI.findall(block) or [block]
            out += [html.unescape(_clean(item)) for item in items]
        out += [html.unescape(_clean(v)) for v in re.findall(rb"\b" + tag + rb"=\"([^\"]*)\"", data[:1_000_000])]
    return out


def _iptc(im: Any) -> list[str]:
    from PIL import IptcImagePlugin

    info = IptcImagePlugin.getiptcinfo(im) or {}
    out = []
    for key in _IPTC:
        value = info.get(key)
        for item in value if isinstance(value, list) else [value]:
            out.append(_clean(item))
    return out


def _user_comment(raw: object) -> str:
    if not isinstance(raw, bytes):
        return _clean(raw)
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        return _clean(body.decode("utf-16-be" if body[:1] == b"\0" else "utf-16-le", "replace"))
    return _clean(body if head.startswith((b"ASCII", b"\0\0\0\0\0\0\0\0")) else raw)


def _exif(im: Any) -> list[str]:
    exif = im.getexif()
    out = [_clean(exif.get(_IMAGE_DESCRIPTION))]
    for tag in _XP:
        value = exif.get(tag)
        if isinstance(value, tuple):
            value = bytes(value)
        if isinstance(value, bytes):
            value = value.decode("utf-16-le", "replace")
        out.append(_clean(value))
    out.append(_user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)))
    return out


def read(path: str) -> str:
    """The words ``path``'s header carries, each once, in the order found; "" when none (or no header)."""
    import warnings

    from PIL import Image

    found: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
                readers = [lambda: _xmp(xmp.encode() if isinstance(xmp, str) else xmp or b""),
                           lambda: _iptc(im), lambda: _exif(im),
                           lambda: [_clean(im.info.get(k)) for k in _PNG_KEYS]]
                for reader in readers:
                    try:
                        found += reader()
                    except Exception:  # noqa: BLE001 - one broken source costs that source only
                        continue
    except Exception:  # noqa: BLE001 - a header that cannot be read carries no words
        return ""
    words = list(dict.fromkeys(w for w in found if w and w.strip(". ") and w not in ("ASCII", "UNICODE")))
    return "; ".join(words)[:MAX_CHARS]
