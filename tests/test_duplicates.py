"""`clipsearch duplicates`: copies grouped with a suggested keeper, similar shots apart, the same through HTTP and on
the page, on a generated ground truth (tests/duplicate_sets.py) indexed with the demo model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clipsearch import images, picture_grid, signature
from tests import duplicate_sets
from tests.conftest import cli_env, run_cli

# The kinds of copy the rules must always find here (bench/duplicates.py: a frame can move the demo model's vector
# past the neighbours searched; docs/benchmarks.md has the rates)
ALWAYS = {"copy:resize", "copy:jpeg", "copy:png", "copy:webp", "copy:orientation", "copy:crop", "copy:brightness"}


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[duplicate_sets.GroundTruth, Path]:
    base = tmp_path_factory.mktemp("duplicates")
    truth = duplicate_sets.make(base / "photos", 18, seed=3)
    (truth.root / "sub").mkdir()
    shutil.copy(truth.root / "s0002.jpg", truth.root / "sub" / "same_bytes.jpg")  # s0002 has no copies of its own
    index = base / "index"
    done = run_cli("index", truth.root, "--index", index, "--model", "demo", "--vocabulary", "none", "--quiet")
    assert done.returncode == 0, done.stderr
    return truth, index


def duplicates(index: Path, *args: object) -> list[dict[str, Any]]:
    done = run_cli("duplicates", "--index", index, "--json", *args, env=cli_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def scene_of(path: str) -> str:
    return Path(path).name[:5] if Path(path).parent.name != "sub" else "s0002"


def test_copies_form_one_group_each_with_the_original_kept(truth: tuple[duplicate_sets.GroundTruth, Path]) -> None:
    ground, index = truth
    groups = duplicates(index)
    grouped = {Path(m["path"]).name: n for n, g in enumerate(groups) for m in g["members"]}
    for group in groups:
        assert group["level"] in ("copy", "identical")
        assert len({scene_of(m["path"]) for m in group["members"]}) == 1, group  # never two scenes in one group
        keep = next(m for m in group["members"] if m["keep"])
        assert group["members"][0] is keep or group["members"][0] == keep  # the keeper first
        assert keep["width"] * keep["height"] == max(m["width"] * m["height"] for m in group["members"])
        assert group["keep"] == keep["path"] and group["reason"]
    for copies in ground.copies:
        original = next(n for n in copies if ground.kind[n] == "original")
        for name in copies - {original}:
            if ground.kind[name] in ALWAYS:
                assert grouped.get(name) is not None and grouped.get(name) == grouped.get(original), name
    same = [g for g in groups if {Path(m["path"]).name for m in g["members"]} == {"s0002.jpg", "same_bytes.jpg"}]
    assert len(same) == 1 and same[0]["level"] == "identical"
    assert [m["score"] for m in same[0]["members"]] == [1.0, 1.0]
    assert "the same in pixels, format and date" in same[0]["reason"] or "taken first" in same[0]["reason"]
    resized = next(g for g in groups if any("_resize" in m["path"] for m in g["members"]))
    assert Path(resized["keep"]).name.count("_") == 0  # the full-size original, not the smaller copy


def test_paths_only_prints_what_the_suggestion_would_not_keep(truth: tuple[duplicate_sets.GroundTruth, Path]) -> None:
    _, index = truth
    groups = duplicates(index)
    done = run_cli("duplicates", "--index", index, "--paths-only", env=cli_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [m["path"] for g in groups for m in g["members"] if not m["keep"]]
    for path in done.stdout.splitlines():
        assert Path(path).is_file()  # nothing was moved or deleted
    with_similar = run_cli("duplicates", "--index", index, "--paths-only", "--similar", env=cli_env())
    assert with_similar.stdout == done.stdout  # similar shots are never offered for removal


def test_similar_shots_are_their_own_groups_and_a_moved_camera_is_never_a_copy(
        truth: tuple[duplicate_sets.GroundTruth, Path]) -> None:
    ground, index = truth
    groups = duplicates(index, "--similar")
    similar = [g for g in groups if g["level"] == "similar"]
    assert similar, "the shots of the same scene should be grouped"
    for group in similar:
        assert len({scene_of(m["path"]) for m in group["members"]}) == 1, group
    copies = {Path(m["path"]).name for g in groups if g["level"] != "similar" for m in g["members"]}
    shifted = {n for n, kind in ground.kind.items() if kind == "similar:shift"}
    assert shifted and not shifted & copies
    added = {n for n, kind in ground.kind.items() if kind == "similar:added"}
    assert added and not added & copies  # the grids see the object
    assert duplicates(index, "--in", ground.root / "sub") == []  # one file of the pair in there: no group
    assert duplicates(index, "--in", ground.root) == duplicates(index)


def test_the_http_api_and_the_page_show_the_same_groups(truth: tuple[duplicate_sets.GroundTruth, Path],
                                                         browser: Any) -> None:
    from tests.serving import Server

    _, index = truth
    server = Server(index).start()
    try:
        response = server.get("/duplicates?level=copy")
        assert response.status == 200 and response.json() == duplicates(index)
        assert server.get("/duplicates?level=similar").json() == duplicates(index, "--similar")
        bad = server.get("/duplicates?level=everything")
        assert bad.status == 400 and "level must be copy or similar" in bad.json()["error"]

        groups = duplicates(index)
        context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
        page = context.new_page()
        page.goto(server.base + "/")
        page.click("#show-duplicates")
        page.wait_for_function(f"document.querySelectorAll('#dup-groups .dup-group').length === {len(groups)}")
        assert page.locator(".dup-member.keep").count() == len(groups)  # one keeper marked in each
        assert page.locator(".dup-member").count() == sum(len(g["members"]) for g in groups)
        assert page.is_hidden("#grid")
        page.click("#hide-duplicates")
        assert page.is_hidden("#duplicates")
        context.close()
    finally:
        server.stop()


def test_the_signature_survives_copies_and_tells_scenes_apart(tmp_path: Path) -> None:
    import io

    import numpy as np

    rng = np.random.default_rng(5)
    original = duplicate_sets.view(duplicate_sets.scene(1))
    other = duplicate_sets.view(duplicate_sets.scene(2))
    base = signature.of(original)
    for kind in ("resize", "jpeg", "png", "webp", "border", "brightness", "crop"):
        _, data = duplicate_sets.copy_of(original, kind, rng)
        with Image.open(io.BytesIO(data)) as im:
            copy = signature.of(im.convert("RGB"))
        assert signature.hamming(base.dct, copy.dct) <= (6 if kind != "crop" else 12), kind
        assert abs(signature.turn(base.edges, copy.edges) or 0.0) <= 0.5, kind  # a copy's edges are not turned
    assert signature.hamming(base.dct, signature.of(other).dct) >= 16
    turned = signature.of(duplicate_sets.view(duplicate_sets.scene(1), angle=1.5))
    assert 1.0 <= abs(signature.turn(base.edges, turned.edges) or 0.0) <= 2.0  # a shot turned by 1.5 degrees
    flat = signature.of(Image.new("RGB", (50, 40), (200, 10, 10)))  # a flat picture has a hash and no edges
    assert flat.dct >= 0 and signature.turn(flat.edges, base.edges) is None



def test_aligned_grids_tell_copies_from_an_added_object_and_a_moved_camera() -> None:
    """``picture_grid.compare`` on pictures made here (no index): every kind of copy within the thresholds of
    ``search.duplicates``, an added object past the residual's, a moved camera past the new strip's."""
    from search.duplicates import GRID_NEW, GRID_RESIDUAL

    rng = np.random.default_rng(5)
    for seed in range(4):
        scene = duplicate_sets.scene(seed)
        original = duplicate_sets.view(scene)
        grid = picture_grid.encode(original)
        for kind in duplicate_sets.COPY_KINDS:
            _, data = duplicate_sets.copy_of(original, kind, rng)
            match = picture_grid.compare(grid, picture_grid.encode(images.decode(data, 224).image))
            assert match is not None and match.residual <= GRID_RESIDUAL and match.new <= GRID_NEW, (seed, kind, match)
        added = picture_grid.compare(grid, picture_grid.encode(duplicate_sets.similar_to(scene, "added", rng)))
        assert added is not None and added.residual > GRID_RESIDUAL, (seed, added)
        moved = picture_grid.compare(grid, picture_grid.encode(duplicate_sets.similar_to(scene, "shift", rng)))
        assert moved is not None and moved.new > GRID_NEW, (seed, moved)
    assert picture_grid.compare(grid, b"not a grid") is None
