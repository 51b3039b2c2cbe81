"""What a browser is sent of a photo: a thumbnail for the grid, the photo itself or a JPEG of it, and how the
server tells, from a file's first bytes, that a browser shows it as it is (so it can be streamed).

Decoding is ``clipsearch.images``'s, the same as for embedding; this module only shapes the result for a page.
"""

from __future__ import annotations

import io

from PIL import Image

from clipsearch.images import DEFAULT_MAX_PIXELS, ImageError, decode

# Formats every current browser shows as they are; anything else (HEIC, TIFF) is converted for the web page.
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}


def browser_media_type(head: bytes) -> str | None:
    """The media type of a file that browsers show as it is, from its first bytes (the same formats as
    ``BROWSER_FORMATS``, told by their signatures, so that a file can be streamed without being opened whole)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"BM") and len(head) >= 26:
        return "image/bmp"
    return None


def _jpeg(im: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


def thumbnail(data: bytes, side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A JPEG whose shorter side is ``side`` (upright, sRGB), for a grid that crops tiles to squares.

    The longer side is capped at 3x ``side`` so a panorama stays small.
    """
    return picture_thumbnail(decode(data, side, max_pixels).image, side)


def picture_thumbnail(im: Image.Image, side: int = 256) -> bytes:
    """``thumbnail`` of a picture already decoded (a video's frame)."""
    scale = min(side / min(im.size), 3 * side / max(im.size), 1.0)
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    return _jpeg(im, 82)


def browser_view(data: bytes, max_side: int = 2048, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str]:
    """The bytes a browser can display for this file, and their media type.

    Files in a web format are sent as they are (the browser applies EXIF orientation
    itself); others are decoded, turned upright and sent as a JPEG at most ``max_side`` wide.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            media_type = BROWSER_FORMATS.get(im.format or "")
    except Exception as exc:  # noqa: BLE001
        raise ImageError(str(exc) or type(exc).__name__) from None
    if media_type is not None:
        return data, media_type
    im = decode(data, max_side, max_pixels).image
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _jpeg(im, 90), "image/jpeg"
