"""Ground truths for bench/duplicates.py made from photos nobody here made, at the sizes of cameras and chat apps,
with copies made by Pillow and by ImageMagick: the data the duplicate rules were never tuned on.

Sources (``--sources``):

- ``skimage``: scikit-image's bundled sample photos (``skimage.data``: astronaut, coffee, chelsea, rocket, ...,
  only the files shipped in the wheel; ``pip install scikit-image``). The rules' thresholds were chosen here.
- ``pillow``: the real photos among Pillow's Tests/images (hopper, flower, the MPO files' first frames, ...), read
  from a clone given by ``--pillow-git`` (a git directory: ``git show HEAD:Tests/images/NAME``).
- ``generated``: tests/duplicate_sets.py's scenes (the project's own generator, 400x300).
- ``shapes``: rendered shapes (crosses, stars, diamonds, circles, text) on flat, grey, noisy and gradient
  backgrounds, as a trial of a new user's folder: few features, many near-alike pictures.

Each original is brought to a size (``camera``: 2, 5, 8 or 12 MP in turn; ``chat``: 1280 px on the long side) and
gets every kind of copy (resized 25-75%, JPEG quality 30-50, PNG, WebP, 2-5% crops, a 24-px white frame, brightness
+-10%), each kind made by Pillow or by ImageMagick in turn, and similar shots (the camera moved 5-10% or turned
1-2 degrees, something added, a burst where the subject moved). Copies are made from the original's pixels
(as a user's editor would), similar shots from the larger scene the original was framed from.

Nothing here is needed by the package: scikit-image and ImageMagick are the bench's own, optional, and a source
whose inputs are missing is skipped with a note.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFile

COPY_KINDS = ("resize", "jpeg", "png", "webp", "crop", "frame", "brightness")
SIMILAR_KINDS = ("shift", "turn", "added", "burst")
CAMERA_MP = (2, 5, 8, 12)
CHAT_SIDE = 1280
VIEW = 0.8  # the original shows this share of its scene's sides: a moved camera shows what it did not

SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field", "immunohistochemistry",
           "retina", "camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "clock", "cell",
           "microaneurysms", "colorwheel", "logo")  # not "cat": chelsea again
PILLOW = ("hopper.jpg", "flower.jpg", "flower2.jpg", "app13-multiple.jpg", "exif-72dpi-int.jpg",
          "exif_typeerror.jpg", "iptc.jpg", "junk_jpeg_header.jpg", "xmp_test.jpg", "icc_profile_big.jpg",
          "sugarshack.mpo", "frozenpond.mpo", "iss634.webp", "hopper_bad_exif.jpg")


@dataclass
class Truth:
    """Which file is what: ``family`` (the original it came from), ``kind`` ("original", "copy:crop:magick",
    "similar:shift", ...); copies and similar shots of one family."""

    root: Path
    kind: dict[str, str] = field(default_factory=dict)
    family: dict[str, str] = field(default_factory=dict)
    size: str = ""

    def add(self, name: str, data: bytes, family: str, kind: str) -> None:
        (self.root / name).write_bytes(data)
        self.kind[name] = kind
        self.family[name] = family

    @classmethod
    def from_folder(cls, root: Path, size: str = "") -> Truth:
        """The truth a folder made by ``make`` holds, read back from its file names (``--keep`` reuses sets)."""
        truth = cls(root, size=size)
        for path in sorted(root.iterdir()):
            name = path.name
            if "_copy_" in name:
                family, rest = name.rsplit("_copy_", 1)
                kind, tool = Path(rest).stem.rsplit("_", 1)
                truth.kind[name], truth.family[name] = f"copy:{kind}:{tool}", family
            elif "_shot_" in name:
                family, rest = name.rsplit("_shot_", 1)
                truth.kind[name], truth.family[name] = f"similar:{Path(rest).stem}", family
            else:
                truth.kind[name], truth.family[name] = "original", path.stem
        return truth

    def copy_pairs(self) -> set[frozenset[str]]:
        """An original and its copies, and copies of one original among themselves."""
        out = set()
        by_family: dict[str, list[str]] = {}
        for name, fam in self.family.items():
            if not self.kind[name].startswith("similar"):
                by_family.setdefault(fam, []).append(name)
        for names in by_family.values():
            out |= {frozenset((a, b)) for a in names for b in names if a < b}
        return out

    def similar_pairs(self) -> set[frozenset[str]]:
        """A similar shot and anything else of its family (the original, its copies, the other shots)."""
        out = set()
        by_family: dict[str, list[str]] = {}
        for name, fam in self.family.items():
            by_family.setdefault(fam, []).append(name)
        for names in by_family.values():
            shots = [n for n in names if self.kind[n].startswith("similar")]
            out |= {frozenset((s, o)) for s in shots for o in names if o != s}
        return out


# --- the photos ----------------------------------------------------------------------------------------------------

def skimage_photos() -> list[tuple[str, Image.Image, Image.Image | None]]:
    """(name, photo, another shot of it or None): the bundled ones only (no downloads)."""
    import skimage.data as data

    out = []
    for name in SKIMAGE:
        try:
            a = getattr(data, name)()
        except Exception:  # noqa: BLE001 - not shipped in this wheel (it would download): left out
            continue
        a = np.asarray(a)
        if a.dtype != np.uint8:
            a = (255 * (a - a.min()) / max(1e-9, float(a.max() - a.min()))).astype(np.uint8)
        im = Image.fromarray(a).convert("RGB")
        other = None
        if name == "motorcycle_left":  # the stereo pair's other eye: another shot of the moment
            other = Image.fromarray(np.asarray(data.motorcycle_right())).convert("RGB")
        out.append((name, im, other))
    return out


def pillow_photos(git_dir: Path) -> list[tuple[str, Image.Image, Image.Image | None]]:
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # junk_jpeg_header.jpg is cut short: shown as viewers show it
    out = []
    for name in PILLOW:
        done = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:Tests/images/{name}"],
                              capture_output=True, check=False)
        if done.returncode or not done.stdout:
            continue
        im = Image.open(io.BytesIO(done.stdout))
        other = None
        if getattr(im, "n_frames", 1) > 1 and name.endswith(".mpo"):  # a stereo pair: the other eye's shot
            im.seek(1)
            other = im.convert("RGB")
            im.seek(0)
        out.append((Path(name).stem, im.convert("RGB"), other))
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return out


def generated_photos(n: int, seed: int) -> list[tuple[str, Image.Image, Image.Image | None]]:
    from tests import duplicate_sets

    return [(f"g{i:03d}", duplicate_sets.scene(seed * 100_000 + i, (500, 375)), None) for i in range(n)]


def shapes_photos(n: int, seed: int) -> list[tuple[str, Image.Image, Image.Image | None]]:
    """Rendered shapes; every other one with a twin: the same shape on another background (a different picture)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = ("cross", "star", "diamond", "circle", "text")[i % 5]
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        at = (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7))
        size = rng.uniform(0.15, 0.35)
        backgrounds = ("flat", "grey", "noisy", "gradient")
        bg = backgrounds[i % 4]
        im = _shape(shape, colour, at, size, bg, int(rng.integers(1 << 30)))
        twin = _shape(shape, colour, at, size, backgrounds[(i + 1) % 4], int(rng.integers(1 << 30))) if i % 2 else None
        out.append((f"{shape}{i:03d}", im, twin))
    return out


def _shape(shape: str, colour: tuple[int, ...], at: tuple[float, float], size: float, bg: str, seed: int,
           side: tuple[int, int] = (800, 600)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = side
    if bg == "flat":
        im = Image.new("RGB", side, (255, 255, 255))
    elif bg == "grey":
        im = Image.new("RGB", side, (128, 128, 128))
    elif bg == "noisy":
        im = Image.fromarray(np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8))
    else:
        from tests import imagegen

        im = imagegen.gradient(rng, side)
    draw = ImageDraw.Draw(im)
    cx, cy, r = at[0] * w, at[1] * h, size * min(w, h)
    if shape == "cross":
        t = r / 4
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=colour)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=colour)
    elif shape == "star":
        pts = [(cx + (r if k % 2 == 0 else r / 2.5) * np.sin(k * np.pi / 5),
                cy - (r if k % 2 == 0 else r / 2.5) * np.cos(k * np.pi / 5)) for k in range(10)]
        draw.polygon(pts, fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=colour)
    elif shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        for k in range(4):
            draw.text((cx - r, cy - r + k * r / 2), "clipsearch " * 2, fill=colour, font_size=max(10, int(r / 3)))
    return im


# --- sizes, copies and shots ---------------------------------------------------------------------------------------

def sized(im: Image.Image, size: str, turn: int) -> Image.Image:
    """The scene brought to a camera's size (2-12 MP in turn) or a chat app's (1280 px on the long side)."""
    w, h = im.size
    if size == "camera":
        f = np.sqrt(CAMERA_MP[turn % len(CAMERA_MP)] * 1e6 / VIEW**2 / (w * h))
    elif size == "chat":
        f = CHAT_SIDE / VIEW / max(w, h)
    else:
        return im
    return im.resize((max(8, round(w * f)), max(8, round(h * f))), Image.Resampling.LANCZOS)


def view(scene: Image.Image, dx: float = 0.0, dy: float = 0.0, angle: float = 0.0) -> Image.Image:
    """The central ``VIEW`` of the scene, the camera moved by (dx, dy) of the view's sides, turned by ``angle``."""
    w, h = scene.size
    vw, vh = round(w * VIEW), round(h * VIEW)
    cx, cy = w / 2 + dx * vw, h / 2 + dy * vh
    if angle:
        scene = scene.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    left, top = round(cx - vw / 2), round(cy - vh / 2)
    return scene.crop((left, top, left + vw, top + vh))


def _encoded(im: Image.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def magick() -> str | None:
    return shutil.which("magick") or shutil.which("convert")


def copy_by(tool: str, original: bytes, im: Image.Image, kind: str, rng: np.random.Generator) -> tuple[str, bytes]:
    """(extension, bytes) of one kind of copy of ``original`` (its file ``original``, its pixels ``im``) made by
    Pillow or by ImageMagick (``tool``: "pillow" or "magick")."""
    w, h = im.size
    f = rng.uniform(0.25, 0.75)
    q = int(rng.integers(30, 51))
    share = rng.uniform(0.02, 0.05)
    cw, ch = int(share * w), int(share * h)
    left, top = int(rng.uniform(0, 1) * cw), int(rng.uniform(0, 1) * ch)
    bright = float(rng.choice([0.9, 1.1]))
    if tool == "pillow":
        if kind == "resize":
            return ".jpg", _encoded(im.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.LANCZOS),
                                    "JPEG", quality=90)
        if kind == "jpeg":
            return ".jpg", _encoded(im, "JPEG", quality=q)
        if kind == "png":
            return ".png", _encoded(im, "PNG", compress_level=1)
        if kind == "webp":
            return ".webp", _encoded(im, "WEBP", quality=80)
        if kind == "crop":
            return ".jpg", _encoded(im.crop((left, top, w - (cw - left), h - (ch - top))), "JPEG", quality=90)
        if kind == "frame":
            framed = Image.new("RGB", (w + 48, h + 48), (255, 255, 255))
            framed.paste(im, (24, 24))
            return ".jpg", _encoded(framed, "JPEG", quality=90)
        if kind == "brightness":
            return ".jpg", _encoded(ImageEnhance.Brightness(im).enhance(bright), "JPEG", quality=90)
        raise ValueError(kind)
    args, ext = {
        "resize": (["-resize", f"{100 * f:.1f}%", "-quality", "90"], ".jpg"),
        "jpeg": (["-quality", str(q)], ".jpg"),
        "png": (["-define", "png:compression-level=1"], ".png"),
        "webp": (["-quality", "80"], ".webp"),
        "crop": (["-crop", f"{w - cw}x{h - ch}+{left}+{top}", "+repage", "-quality", "90"], ".jpg"),
        "frame": (["-bordercolor", "white", "-border", "24", "-quality", "90"], ".jpg"),
        "brightness": (["-evaluate", "multiply", f"{bright}", "-quality", "90"], ".jpg"),
    }[kind]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jpg", Path(tmp) / f"out{ext}"
        src.write_bytes(original)
        subprocess.run([magick() or "convert", str(src), *args, str(dst)], check=True, capture_output=True)
        return ext, dst.read_bytes()


def shot(scene: Image.Image, kind: str, rng: np.random.Generator, twin: Image.Image | None) -> Image.Image:
    """A similar shot of the scene: the camera moved 5-10% or turned 1-2 degrees, something added, or a burst
    (the subject, a fifth of the picture, moved by 4-8% of a side); ``twin``: another shot given by the source."""
    if twin is not None:
        return twin
    sign = float(rng.choice([-1, 1]))
    if kind == "shift":
        share = rng.uniform(0.05, 0.10)
        return view(scene, dx=sign * share, dy=rng.uniform(-0.5, 0.5) * share)
    if kind == "turn":
        return view(scene, angle=sign * rng.uniform(1, 2))
    out = view(scene)
    w, h = out.size
    if kind == "added":
        size = int(rng.uniform(0.12, 0.2) * min(w, h))
        x0, y0 = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
        ImageDraw.Draw(out).ellipse((x0, y0, x0 + size, y0 + size),
                                    fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        return out
    if kind == "burst":
        bw, bh = int(0.45 * w), int(0.45 * h)
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        patch = out.crop((x0, y0, x0 + bw, y0 + bh))
        move = int(sign * rng.uniform(0.04, 0.08) * w)
        out.paste(patch, (min(max(0, x0 + move), w - bw), y0))
        return out
    raise ValueError(kind)


def make(root: Path, source: str, size: str, photos: list[tuple[str, Image.Image, Image.Image | None]],
         seed: int = 0, tools: tuple[str, ...] = ("pillow", "magick")) -> Truth:
    """Every photo as an original at ``size``, with every kind of copy (the tool in turn) and two similar shots."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = Truth(root, size=size)
    if "magick" in tools and magick() is None:
        tools = tuple(t for t in tools if t != "magick")
    turn = 0
    for i, (name, photo, twin) in enumerate(photos):
        scene = sized(photo, size, i)
        original = view(scene)
        family = f"{source}-{name}"
        data = _encoded(original, "JPEG", quality=92)
        truth.add(f"{family}.jpg", data, family, "original")
        for j, kind in enumerate(COPY_KINDS):
            tool = tools[(i + j) % len(tools)]
            ext, copy = copy_by(tool, data, original, kind, rng)
            truth.add(f"{family}_copy_{kind}_{tool}{ext}", copy, family, f"copy:{kind}:{tool}")
        shots = [SIMILAR_KINDS[(2 * i) % 4], SIMILAR_KINDS[(2 * i + 1) % 4]]
        if twin is not None:
            other = sized(twin, size, i)
            kind = "background" if source == "shapes" else "other-eye"
            truth.add(f"{family}_shot_{kind}.jpg", _encoded(view(other), "JPEG", quality=92), family, f"similar:{kind}")
            shots = shots[:1]
        for kind in shots:
            truth.add(f"{family}_shot_{kind}.jpg", _encoded(shot(scene, kind, rng, None), "JPEG", quality=92),
                      family, f"similar:{kind}")
        turn += 1
    return truth
