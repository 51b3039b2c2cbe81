"""Generated test images: distinct photo-like pictures in every format and mode, plus hostile files."""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clipsearch import images


def gradient(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A linear blend of two random colours at a random angle: the background of the generated pictures."""
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = ((xx / w) * np.cos(angle) + (yy / h) * np.sin(angle) + 1) / 2
    base = (c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]).astype("uint8")
    return Image.fromarray(base, "RGB")


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct, photo-like RGB picture: a colour gradient with a few random shapes and mild noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = gradient(rng, size)
    draw = ImageDraw.Draw(im)
    m = max(2, min(w, h) // 12)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, w - m)), int(rng.integers(0, h - m))
        x1, y1 = x0 + int(rng.integers(m, max(m + 1, w // 2))), y0 + int(rng.integers(m, max(m + 1, h // 2)))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    noise = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype="float64") + noise, 0, 255).astype("uint8"), "RGB")


def jpeg_bytes(im: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, **kwargs)
    return buf.getvalue()


def with_orientation(im: Image.Image, orientation: int) -> bytes:
    """JPEG bytes of ``im`` carrying an EXIF orientation tag (pixels stored as given)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(im, exif=exif.tobytes())


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG that claims an enormous size (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(b"\x00" * (width // 8 + 1) * 16)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@dataclass
class PhotoFolder:
    root: Path
    good: list[Path] = field(default_factory=list)  # each must be indexed and found by itself
    bad: list[Path] = field(default_factory=list)  # each must be listed in "failed"
    ignored: list[Path] = field(default_factory=list)  # never indexed (hidden, not images, links)


def make_photo_folder(root: Path) -> PhotoFolder:
    """Good files in every supported format and mode, bad files, and walk hazards."""
    folder = PhotoFolder(root)
    (root / "trip" / "day2").mkdir(parents=True)
    seed = iter(range(100, 1000))

    def good(rel: str, im: Image.Image, **save: object) -> Path:
        path = root / rel
        im.save(path, **save)
        folder.good.append(path)
        return path

    good("a.jpg", photo(next(seed)), quality=90)
    good("trip/B.JPEG", photo(next(seed)), format="JPEG")
    good("trip/c.png", photo(next(seed)))
    good("trip/day2/d.webp", photo(next(seed)), quality=90)
    good("trip/day2/e.bmp", photo(next(seed)))
    good("f.TIFF", photo(next(seed)), compression="tiff_lzw")
    frames = [photo(next(seed)).convert("P", palette=Image.Palette.ADAPTIVE), photo(next(seed)).convert("P")]
    good("g.gif", frames[0], save_all=True, append_images=frames[1:], duration=100)
    good("h_cmyk.jpg", photo(next(seed)).convert("CMYK"), format="JPEG")
    good("i_palette.png", photo(next(seed)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    rgba = photo(next(seed)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    good("j_alpha.png", rgba)
    gray16 = np.asarray(photo(next(seed)).convert("L"), dtype="uint16") * 257
    good("k_gray16.png", Image.fromarray(gray16))
    good("l_gray.png", photo(next(seed)).convert("L"))
    big = root / "m_big.jpg"
    big.write_bytes(jpeg_bytes(photo(next(seed), (2000, 1500))))
    folder.good.append(big)
    rotated = root / "n_rotated.jpg"
    rotated.write_bytes(with_orientation(photo(next(seed)), 6))
    folder.good.append(rotated)
    try:
        import pillow_heif  # noqa: F401

        from clipsearch.images import register_plugins

        register_plugins()
        good("o.heic", photo(next(seed)), format="HEIF", quality=90)
    except ImportError:
        pass

    if ".avif" in images.supported_extensions():
        good("p.avif", photo(next(seed)), quality=90)

    # bad files: listed in "failed", never stop the run
    bad = {
        "bad_empty.jpg": b"",
        "bad_random.jpg": np.random.default_rng(5).bytes(5000),
        "bad_text.png": b"this is not a png at all\n",
        "trip/bad_truncated.jpg": jpeg_bytes(photo(next(seed), (800, 600)))[:6000],
        "bad_bomb.png": png_bomb(),
    }
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
        folder.bad.append(root / rel)

    # ignored: hidden files and folders, non-images, symlink hazards
    (root / ".hidden").mkdir()
    photo(next(seed)).save(root / ".hidden" / "secret.jpg")
    photo(next(seed)).save(root / ".dotfile.jpg")
    (root / "._a.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "notes.txt").write_text("not an image")
    folder.ignored += [root / ".hidden" / "secret.jpg", root / ".dotfile.jpg", root / "._a.jpg", root / "notes.txt"]
    os.symlink(root, root / "trip" / "loop")  # a folder link back to the root: must not loop
    os.symlink(root / "missing.jpg", root / "broken.jpg")  # a broken link
    folder.ignored.append(root / "broken.jpg")
    return folder
