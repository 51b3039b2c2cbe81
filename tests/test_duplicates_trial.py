"""`clipsearch duplicates` on what a new user tried (issue 32): featureless pictures, chains of trims, a folder
filter, renderings of one shape on two backgrounds, a lossless PNG and a 2% trim of a large photo; indexed with
the demo model, through the CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests import duplicate_sets
from tests.conftest import cli_env, run_cli
from tests.videogen import make_video, sample_picture

CHAIN = 9  # trims of 6% each, one from another: two steps apart still align (0.88), three do not (0.83 < 0.86)


def _jpeg(im: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _shape(background: str) -> Image.Image:
    rng = np.random.default_rng(4)
    if background == "grey":
        im = Image.new("RGB", (640, 480), (128, 128, 128))
    else:
        im = Image.fromarray(np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.rectangle((220, 200, 420, 280), fill=(220, 20, 20))
    draw.rectangle((280, 140, 360, 340), fill=(220, 20, 20))
    return im


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("trial")
    root = base / "photos"
    odd = root / "odd"
    odd.mkdir(parents=True)
    Image.new("RGB", (3000, 2250), (20, 40, 200)).save(odd / "blue.jpg", quality=90)  # flat, large
    Image.new("RGB", (1200, 900), (20, 40, 200)).save(odd / "blue-small.png")  # the same flat colour, smaller
    Image.new("RGBA", (200, 200), (0, 0, 0, 0)).save(odd / "transparent.png")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(odd / "red-pixel.png")
    shapes = root / "shapes"
    shapes.mkdir()
    (shapes / "cross-grey.jpg").write_bytes(_jpeg(_shape("grey")))
    (shapes / "cross-noisy.jpg").write_bytes(_jpeg(_shape("noisy")))
    chain = root / "chain"
    chain.mkdir()
    picture = duplicate_sets.scene(11, (900, 700)).resize((1200, 900), Image.Resampling.LANCZOS)
    for i in range(CHAIN):  # each a 6% trim of the one before, from its left and top
        (chain / f"c{i}.jpg").write_bytes(_jpeg(picture))
        w, h = picture.size
        picture = picture.crop((round(0.06 * w), round(0.06 * h), w, h))
    large = root / "large"
    large.mkdir()
    photo = duplicate_sets.scene(12, (1100, 850)).resize((2400, 1800), Image.Resampling.LANCZOS)
    (large / "original.jpg").write_bytes(_jpeg(photo))
    photo.save(large / "lossless.png", compress_level=1)
    w, h = photo.size
    (large / "trim2.jpg").write_bytes(_jpeg(photo.crop((24, 18, w - 24, h - 18)), 90))
    photo.resize((1280, 960), Image.Resampling.LANCZOS).save(large / "chat.jpg", quality=80)
    index = base / "index"
    done = run_cli("index", root, "--index", index, "--model", "demo", "--vocabulary", "none", "--quiet")
    assert done.returncode == 0, done.stderr
    return root, index


def duplicates(index: Path, *args: object) -> list[dict[str, Any]]:
    done = run_cli("duplicates", "--index", index, "--json", *args, env=cli_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def names(group: dict[str, Any]) -> set[str]:
    return {Path(m["path"]).name for m in group["members"]}


def test_featureless_pictures_are_never_copies(trial: tuple[Path, Path]) -> None:
    root, index = trial
    odd = {"blue.jpg", "blue-small.png", "transparent.png", "red-pixel.png"}
    assert duplicates(index, "--in", root / "odd") == []
    assert duplicates(index, "--in", root / "odd", "--similar") == []
    assert not any(names(g) & odd for g in duplicates(index, "--similar"))
    done = run_cli("duplicates", "--index", index, "--paths-only", "--in", root / "odd", env=cli_env())
    assert done.returncode == 0 and done.stdout == ""


@pytest.mark.xfail(strict=True, reason="still fails (issue 32): a 32x32 grid averages noise to the grey it is "
                   "made of, and nothing stored sees texture; docs/benchmarks.md")
def test_one_shape_on_two_backgrounds_is_not_a_copy(trial: tuple[Path, Path]) -> None:
    _, index = trial
    for group in duplicates(index):
        assert not {"cross-grey.jpg", "cross-noisy.jpg"} <= names(group), group


def test_a_lossless_png_a_trim_and_a_chat_copy_join_their_original(trial: tuple[Path, Path]) -> None:
    root, index = trial
    groups = [g for g in duplicates(index) if "original.jpg" in names(g)]
    assert len(groups) == 1 and names(groups[0]) == {"original.jpg", "lossless.png", "trim2.jpg", "chat.jpg"}
    assert Path(groups[0]["keep"]).name == "original.jpg"  # as many pixels as the PNG, in the camera's format


def test_trims_of_trims_never_chain(trial: tuple[Path, Path]) -> None:
    """c0 ... c8, each a 6% trim of the one before: neighbours pass the copy rule, three steps apart do not. A
    group of connected pairs would hold all nine; a group is at most two passing pairs across (four steps)."""
    root, index = trial
    groups = [g for g in duplicates(index) if any(n.startswith("c") and n[1:2].isdigit() for n in names(g))]
    assert groups, "neighbouring trims are copies"
    for group in groups:
        steps = sorted(int(n[1:].split(".")[0]) for n in names(group))
        assert steps[-1] - steps[0] <= 4, steps
    listed = run_cli("duplicates", "--index", index, "--paths-only", "--in", root / "chain", env=cli_env())
    assert listed.stdout.splitlines() == [m["path"] for g in duplicates(index, "--in", root / "chain")
                                          for m in g["members"] if not m["keep"]]


def test_a_folder_filter_changes_what_is_listed_not_what_is_judged(trial: tuple[Path, Path]) -> None:
    root, index = trial
    whole = duplicates(index, "--similar")
    for folder in ("large", "chain", "shapes", "odd"):
        inside = duplicates(index, "--in", root / folder, "--similar")
        expected = [names(g) & {p.name for p in (root / folder).iterdir()} for g in whole]
        assert sorted(map(sorted, (names(g) for g in inside))) == sorted(
            sorted(e) for e in expected if len(e) >= 2), folder


def test_similar_groups_list_no_copy_twice(trial: tuple[Path, Path]) -> None:
    _, index = trial
    groups = duplicates(index, "--similar")
    keepers = {g["keep"] for g in groups if g["level"] != "similar"}
    seen: dict[str, int] = {}
    for group in groups:
        for m in group["members"]:
            seen[m["path"]] = seen.get(m["path"], 0) + 1
    assert all(n == 1 or path in keepers for path, n in seen.items()), seen


def test_a_photo_and_a_video_that_shows_it_are_never_copies(tmp_path: Path) -> None:
    """Issue 35: a video whose first seconds show a photo of the folder was the photo's keeper, and
    --paths-only listed the photo (to be trashed). Copies are of one medium: photos among photos, videos among
    videos; a real copy of each is still one."""
    root = tmp_path / "photos"
    root.mkdir()
    photo = duplicate_sets.scene(21, (480, 360))
    (root / "coffee.jpg").write_bytes(_jpeg(photo))
    (root / "coffee-chat.jpg").write_bytes(_jpeg(photo.resize((360, 270), Image.Resampling.LANCZOS), 70))
    later = [(8.0, sample_picture("red-star")), (10.0, sample_picture("green-square"))]
    # the photo for its first 8 s, in more pixels than the photo has: it was the keeper, coffee.jpg a copy to trash
    make_video(root / "trip_h264.mp4", [(0.0, photo), *later], 12, size=(640, 480), gop=10)
    shutil.copy(root / "trip_h264.mp4", root / "trip-copy.mov")
    for seed in range(4):  # a few unrelated photos: the collection's yardstick
        (root / f"other{seed}.jpg").write_bytes(_jpeg(duplicate_sets.scene(40 + seed, (640, 480))))
    index = tmp_path / "index"
    done = run_cli("index", root, "--index", index, "--model", "demo", "--vocabulary", "none", "--quiet")
    assert done.returncode == 0, done.stderr
    groups = duplicates(index)
    assert sorted(sorted(names(g)) for g in groups) == [["coffee-chat.jpg", "coffee.jpg"],
                                                       ["trip-copy.mov", "trip_h264.mp4"]]
    listed = run_cli("duplicates", "--index", index, "--paths-only", env=cli_env())
    trashed = {Path(p).name for p in listed.stdout.splitlines()}
    assert listed.returncode == 0 and len(trashed) == 2 and "coffee-chat.jpg" in trashed, trashed  # never coffee.jpg
    assert len(trashed & {"trip-copy.mov", "trip_h264.mp4"}) == 1, trashed
    for group in duplicates(index, "--similar"):  # similar at most, never a keeper over the other medium
        if group["level"] != "similar":
            assert names(group) in ({"coffee.jpg", "coffee-chat.jpg"}, {"trip_h264.mp4", "trip-copy.mov"}), group
