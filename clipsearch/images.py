"""Turn the bytes of an image file into an upright sRGB picture, as small as the model allows.

Shared by the indexer (every photo) and search (``--image`` queries) so that a
query image is decoded exactly like the indexed ones.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageCms

from clipsearch import photo_meta
from clipsearch.photo_meta import PhotoMeta

# We enforce our own pixel cap (``max_pixels``) so one hostile file fails alone
# instead of Pillow warning or raising from deep inside a worker.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb error threshold

EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
PLUGIN_EXTENSIONS = {".heic": "pillow_heif", ".heif": "pillow_heif", ".avif": "pillow_heif"}

_plugins_tried = False


def register_plugins() -> frozenset[str]:
    """Enable HEIC/AVIF when the optional pillow-heif plugin is installed; returns the extensions it adds."""
    global _plugins_tried
    added: set[str] = set()
    try:
        import pillow_heif  # type: ignore[import-not-found]

        if not _plugins_tried:
            pillow_heif.register_heif_opener()
            if hasattr(pillow_heif, "register_avif_opener"):
                pillow_heif.register_avif_opener()
        added.update(ext for ext, mod in PLUGIN_EXTENSIONS.items() if mod == "pillow_heif")
        if not hasattr(pillow_heif, "register_avif_opener"):
            added.discard(".avif")
    except ImportError:
        pass
    if ".avif" not in added and "AVIF" in Image.registered_extensions().values():
        added.add(".avif")  # Pillow >= 11.2 decodes AVIF itself when built with libavif
    _plugins_tried = True
    return frozenset(added)


def supported_extensions() -> frozenset[str]:
    return EXTENSIONS | register_plugins()


class ImageError(Exception):
    """This file cannot be used as an image (the message says why)."""


@dataclass
class Decoded:
    image: Image.Image  # RGB, upright, reduced to about the size the model needs
    width: int  # full size as displayed (after EXIF orientation)
    height: int
    meta: PhotoMeta = field(default_factory=PhotoMeta)  # from the EXIF block read for the orientation
    note: str | None = None  # decoded, with something to say: a JPEG that ends early, indexed as far as it decodes


# EXIF orientation tag -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_SRGB = ImageCms.createProfile("sRGB")
_transforms: dict[tuple[bytes, str], ImageCms.ImageCmsTransform] = {}


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Apply an embedded colour profile (Adobe RGB, Display P3, CMYK press profiles) so colours match a viewer's."""
    if not icc or im.mode not in ("RGB", "CMYK"):
        return im
    key = (icc, im.mode)
    transform = _transforms.get(key)
    if transform is None:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            transform = ImageCms.buildTransform(src, _SRGB, im.mode, "RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            return im
        if len(_transforms) > 64:
            _transforms.clear()
        _transforms[key] = transform
    try:
        return ImageCms.applyTransform(im, transform) or im
    except (ImageCms.PyCMSError, ValueError):
        return im


def _flatten(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha over white, 16-bit and float scaled, not clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype="float64")
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if im.mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).round().astype("uint8"))
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im if im.mode == "RGB" else im.convert("RGB")


_REDUCIBLE = frozenset({"RGB", "RGBA", "L", "LA", "CMYK"})


def _reduce(im: Image.Image, min_side: int | None) -> Image.Image:
    """Box-shrink by an integer factor that keeps the shorter side >= 2 x ``min_side`` (cheap, alias-free).

    The margin leaves the model's own antialiased resize at least a 2x step: box-shrinking to just
    above the input size and then resizing by a few percent changes fine texture (noise, foliage) enough
    to move embeddings of a 64 px model by 0.01 in cosine.
    """
    if not min_side:
        return im
    factor = min(im.size) // (2 * min_side)
    return im.reduce(factor) if factor >= 2 else im


TRUNCATED_MAX_MISSING = 0.25  # a JPEG that ends early is used when at most this much of its picture is missing
_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks a PNG may drop and still be the same picture: text (Pillow refuses one that inflates past
# PngImagePlugin.MAX_TEXT_CHUNK, a guard against zip bombs) and the colour profile (then read as sRGB).
_DROPPABLE_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"iCCP"}


def decode(data: bytes, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode ``data`` to an upright RGB image whose shorter side is still >= ``min_side``.

    JPEGs are decoded in the DCT domain at 1/2, 1/4 or 1/8 scale when that still
    covers ``min_side`` (Pillow's draft mode), other formats are box-reduced
    right after decoding, so the model's resize works on a small picture.

    A JPEG that ends early (a copy or a camera cut it short: no end marker, or zeros where its last bytes should
    be) is decoded as far as its data goes, as viewers show it, and carries a ``note``; one with more than
    ``TRUNCATED_MAX_MISSING`` of its picture missing is refused, and so is one whose data is broken rather than
    short (the decoder's own error). A PNG whose text or colour profile chunk is too large for Pillow is decoded
    without its text and profile chunks, not refused.
    """
    try:
        return _decode(data, min_side, max_pixels)
    except ImageError as exc:
        if data.startswith(PNG_SIGNATURE) and "MAX_TEXT_CHUNK" in str(exc):
            return _decode(png_without_text(data), min_side, max_pixels)
        if not (data.startswith(b"\xff\xd8") and str(exc).startswith("image file is truncated")):
            raise
    return _decode(data.rstrip(b"\x00") + _EOI, min_side, max_pixels, truncated=True)


def png_without_text(data: bytes) -> bytes:
    """The PNG ``data`` without its text and colour profile chunks (every other chunk as it was, CRCs and all)."""
    out, at = [data[:8]], 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        end = at + 12 + length
        if kind not in _DROPPABLE_CHUNKS:
            out.append(data[at:end])
        at = end
        if kind == b"IEND":
            break
    return b"".join(out)


def _decode(data: bytes, min_side: int | None, max_pixels: int, truncated: bool = False) -> Decoded:
    note = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            # The whole file to the decoder in one call, not 64 KiB blocks: each call releases the GIL, and
            # retaking it while other threads run Python costs up to the switch interval each time
            # (bench/gil_contention.py).
            im.decodermaxblock = max(len(data), im.decodermaxblock)
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageError("image has no pixels")
            if width * height > max_pixels:
                raise ImageError(
                    f"{width}x{height} pixels is over the limit of {max_pixels:,} (possible decompression bomb)"
                )
            exif = im.getexif()
            orientation = exif.get(0x0112, 1)
            meta = photo_meta.from_exif(exif)
            icc = im.info.get("icc_profile")
            if min_side and im.format == "JPEG":
                im.draft("RGB", (min_side, min_side))
            im.load()
            if truncated:
                note = _what_is_missing(im)
            if im.mode in _REDUCIBLE:
                im = _reduce(im, min_side)
            im = _flatten(_to_srgb(im, icc))
            im = _reduce(im, min_side)
            if orientation in _ORIENT:
                im = im.transpose(_ORIENT[orientation])
                if orientation >= 5:
                    width, height = height, width
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(str(exc)) from None
    except MemoryError:
        raise ImageError("out of memory while decoding") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem only
        message = str(exc) or type(exc).__name__
        if isinstance(exc, Image.UnidentifiedImageError):
            message = "not a recognised image format"
        raise ImageError(message) from None
    return Decoded(im, width, height, meta, note)


def _what_is_missing(im: Image.Image) -> str:
    """The note for a JPEG that ended early, decoded as far as it goes, or ``ImageError`` when too much is missing.

    What the decoder had no data for it fills with one flat value, to the last row: the flat rows at the bottom
    are the missing part (a progressive JPEG has every row, only coarser)."""
    import numpy as np

    pixels = np.asarray(im)
    flat = (pixels == pixels[-1, 0]).reshape(im.height, -1).all(axis=1)  # rows all of the last row's first pixel
    missing = len(flat) if flat.all() else int(np.argmin(flat[::-1]))
    share = missing / max(1, im.height)
    if share > TRUNCATED_MAX_MISSING:
        raise ImageError(f"image file is truncated: {share:.0%} of the picture is missing")
    if missing == 0:
        return "the file ends early (no JPEG end marker): every row decoded"
    return (f"the file ends early: the bottom {max(1, round(share * 100))}% of the picture is missing (indexed as far "
            "as it decodes)")


@dataclass
class JpegHeader:
    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int  # EXIF orientation tag, 1 = upright
    meta: PhotoMeta = field(default_factory=PhotoMeta)


GPU_MAX_PIXELS = 64_000_000  # larger photos are draft-decoded on the CPU, which never holds them whole
_srgb_profiles: dict[bytes, bool] = {}


def _is_srgb(icc: bytes) -> bool:
    """Whether an embedded profile is (a variant of) sRGB, so that ignoring it changes no colour."""
    known = _srgb_profiles.get(icc)
    if known is None:
        try:
            description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
        except (ImageCms.PyCMSError, OSError, ValueError):
            description = ""
        known = "srgb" in description.lower().replace(" ", "")
        if len(_srgb_profiles) > 64:
            _srgb_profiles.clear()
        _srgb_profiles[icc] = known
    return known


def gpu_decodable_jpeg(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> JpegHeader | None:
    """The header of a JPEG that nvJPEG decodes to what ``decode`` gives, else None (decode it on the CPU).

    That is a whole (ends with its EOI marker) baseline (not progressive) 8-bit JPEG in
    YCbCr or grey, with no colour profile or an sRGB one. Progressive files are left out because nvJPEG decodes
    them on the host, one at a time, several times slower than Pillow's draft mode (bench/decode_rates.py);
    CMYK and wide-gamut (Display P3, Adobe RGB) ones because their colours need the profile applied.
    """
    if not data.startswith(b"\xff\xd8") or not data[-64:].rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None  # not a JPEG, or truncated: nvJPEG may decode what is there, Pillow refuses it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            info = im.info
            if info.get("progressive") or info.get("progression") or info.get("adobe_transform") == 0:
                return None
            width, height = im.size
            if not 0 < width * height <= min(max_pixels, GPU_MAX_PIXELS):
                return None
            icc = info.get("icc_profile")
            if icc and not _is_srgb(icc):
                return None
            exif = im.getexif()
            orientation = exif.get(0x0112, 1)
            meta = photo_meta.from_exif(exif)
    except Exception:  # noqa: BLE001 - anything odd is left to the CPU path, which reports it
        return None
    return JpegHeader(width, height, orientation if orientation in range(1, 9) else 1, meta)


def probe(data: bytes) -> tuple[int, int]:
    """Displayed (width, height) from the header alone, without decoding pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
    except Exception as exc:  # noqa: BLE001
        raise ImageError(str(exc) or type(exc).__name__) from None
    return width, height
