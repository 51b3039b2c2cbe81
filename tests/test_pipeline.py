"""The whole pipeline through the real CLI: index a generated folder, search it, re-index after changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch.store import StoreReader
from search.engine import Searcher
from tests import imagegen
from tests.conftest import Cli, cosine, index_folder, open_image, search_json

REPORT_KEYS = {"added", "updated", "removed", "renamed", "unchanged", "headers_read", "signed", "tagged", "failed", "seconds",
               "model_seconds", "words"}  # words: the words stage is on by default (faces, off, adds none)


def index_json(cli: Cli, *args: str) -> dict:
    result = cli("index", *args, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert isinstance(report, dict)
    return report


def test_first_index_finds_every_good_file_by_itself(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str) -> None:
    report = index_json(cli, photos.root, "--model", model_spec)
    assert set(report) == REPORT_KEYS
    assert report["added"] == len(photos.good)
    assert (report["updated"], report["removed"], report["renamed"], report["unchanged"]) == (0, 0, 0, 0)
    assert 0 < report["model_seconds"] < report["seconds"]
    failed = {f["path"]: f["error"] for f in report["failed"]}
    assert set(failed) == {str(p) for p in photos.bad}
    assert all(error for error in failed.values())
    assert "pixels is over the limit" in failed[str(photos.root / "bad_bomb.png")]

    for path in photos.good:
        hits = search_json(cli, "--image", str(path), "-k", "3")
        assert hits[0]["path"] == str(path), (path, hits)
        assert hits[0]["rank"] == 1
        assert hits[0]["score"] >= 0.99
        assert [h["rank"] for h in hits] == [1, 2, 3]
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_walk_skips_hidden_non_images_and_link_hazards(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str,
                                                        index_dir: Path) -> None:
    index_json(cli, photos.root, "--model", model_spec)
    store = StoreReader.open(index_dir)
    indexed = set(store.catalog.paths(store.catalog.ids_under(str(photos.root))).values())
    assert indexed == {str(p) for p in photos.good}
    assert not any("/loop/" in p for p in indexed)

    report = index_json(cli, photos.root, "--include-hidden")
    assert report["added"] == 2  # .hidden/secret.jpg and .dotfile.jpg
    assert any(f["path"].endswith("._a.jpg") for f in report["failed"])  # AppleDouble junk is not an image


def test_noop_reindex_changes_nothing(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str, index_dir: Path) -> None:
    index_json(cli, photos.root, "--model", model_spec)
    before = StoreReader.open(index_dir).info()
    faiss_files = sorted(index_dir.glob("*.faiss"))
    stamps = [f.stat().st_mtime_ns for f in faiss_files]

    report = index_json(cli)  # no folder: every indexed folder
    assert report["unchanged"] == len(photos.good)
    assert (report["added"], report["updated"], report["removed"], report["renamed"]) == (0, 0, 0, 0)
    assert report["failed"] == []  # known-bad files are not retried until they change
    assert report["model_seconds"] == 0
    after = StoreReader.open(index_dir).info()
    assert after["generation"] == before["generation"]
    assert after["images"] == before["images"]
    assert sorted(index_dir.glob("*.faiss")) == faiss_files
    assert [f.stat().st_mtime_ns for f in faiss_files] == stamps


def test_modify_delete_rename_copy(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str, tmp_path: Path,
                                   index_dir: Path) -> None:
    index_json(cli, photos.root, "--model", model_spec)
    root = photos.root
    # modify: new content under the same name
    imagegen.photo(9001).save(root / "a.jpg", quality=90)
    # delete
    (root / "trip" / "c.png").unlink()
    # rename into another folder, and copy
    (root / "trip" / "day2" / "e.bmp").rename(root / "e_moved.bmp")
    shutil.copy(root / "f.TIFF", root / "trip" / "f_copy.tiff")

    report = index_json(cli)
    assert report["updated"] == 1
    assert report["removed"] == 1
    assert report["renamed"] == 1
    assert report["added"] == 1  # the copy
    assert report["failed"] == []

    hits = search_json(cli, "--image", str(root / "a.jpg"), "-k", "1")
    assert hits[0]["path"] == str(root / "a.jpg") and hits[0]["score"] >= 0.99
    old = tmp_path / "old_a.jpg"
    imagegen.photo(100).save(old, quality=90)  # the original content of a.jpg (seed 100)
    searcher = Searcher(index_dir)
    stored = searcher.store.vectors.of_path(str(root / "a.jpg"))
    embed = searcher.query_model.embed_image
    assert cosine(stored, embed(str(root / "a.jpg"))) >= 0.999
    assert cosine(stored, embed(str(old))) < cosine(stored, embed(str(root / "a.jpg")))

    everything = search_json(cli, "--image", str(root / "e_moved.bmp"), "-k", "100")
    paths = [h["path"] for h in everything]
    assert str(root / "trip" / "c.png") not in paths
    assert str(root / "trip" / "day2" / "e.bmp") not in paths
    assert paths[0] == str(root / "e_moved.bmp")
    assert {str(root / "f.TIFF"), str(root / "trip" / "f_copy.tiff")} <= set(paths)


def test_rename_only_run_never_loads_the_model(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str) -> None:
    index_json(cli, photos.root, "--model", model_spec)
    (photos.root / "a.jpg").rename(photos.root / "trip" / "a_renamed.jpg")
    (photos.root / "l_gray.png").touch()  # new mtime, same content: no re-embedding either
    ckpt = Path(model_spec.split(":", 1)[1])
    hidden = ckpt.with_suffix(".away")
    ckpt.rename(hidden)
    try:
        report = index_json(cli)
    finally:
        hidden.rename(ckpt)
    assert report["renamed"] == 1
    assert (report["added"], report["updated"], report["removed"]) == (0, 0, 0)
    assert report["unchanged"] == len(photos.good) - 1


def test_exif_rotated_photo_embeds_like_its_rotated_twin(cli: Cli, tmp_path: Path, model_spec: str,
                                                         index_dir: Path) -> None:
    folder = tmp_path / "exif"
    folder.mkdir()
    base = imagegen.photo(77, (400, 240))
    (folder / "tagged.jpg").write_bytes(imagegen.with_orientation(base, 6))  # "rotate 90 CW to view"
    (folder / "raw_unrotated.jpg").write_bytes(imagegen.jpeg_bytes(base))  # same pixels, no tag
    (folder / "upside_down.jpg").write_bytes(imagegen.jpeg_bytes(base.transpose(2 + 1)))  # 180
    twin = tmp_path / "twin.jpg"
    twin.write_bytes(imagegen.jpeg_bytes(base.transpose(4)))  # ROTATE_270 == 90 degrees clockwise
    index_json(cli, folder, "--model", model_spec)

    hits = search_json(cli, "--image", str(twin), "-k", "3")
    assert hits[0]["path"] == str(folder / "tagged.jpg"), hits
    assert hits[0]["score"] >= 0.98
    assert hits[0]["score"] > hits[1]["score"]

    with StoreReader.open(index_dir) as store:
        sizes = {name: store.catalog.file_row(str(folder / name)) for name in ("tagged.jpg", "raw_unrotated.jpg")}
    assert (sizes["tagged.jpg"].width, sizes["tagged.jpg"].height) == (240, 400)  # displayed size, after orientation
    assert (sizes["raw_unrotated.jpg"].width, sizes["raw_unrotated.jpg"].height) == (400, 240)


def test_search_within_folder_and_k(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str) -> None:
    index_json(cli, photos.root, "--model", model_spec)
    trip = photos.root / "trip"
    hits = search_json(cli, "--image", str(photos.root / "a.jpg"), "--in", str(trip), "-k", "50")
    expected = {str(p) for p in photos.good if trip in p.parents}
    assert {h["path"] for h in hits} == expected
    assert search_json(cli, "--image", str(photos.root / "a.jpg"), "--in", str(photos.root / "nowhere")) == []
    nowhere = cli("search", "a photo", "--in", photos.root / "nowhere")
    assert nowhere.stdout == "no results\n"
    assert nowhere.stderr == (f"clipsearch: note: nothing is indexed under {photos.root / 'nowhere'} "
                              f"(indexed folders: {photos.root})\n")
    assert len(search_json(cli, "a photo", "-k", "4")) == 4


def test_several_roots_in_one_index(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    for name, seed in (("one", 1), ("two", 2)):
        (tmp_path / name).mkdir()
        imagegen.photo(seed).save(tmp_path / name / f"{name}.png")
    index_json(cli, tmp_path / "one", "--model", model_spec)
    assert index_json(cli, tmp_path / "two")["added"] == 1
    info = cli("info", "--json").json()
    assert info["images"] == 2
    assert info["roots"] == [str(tmp_path / "one"), str(tmp_path / "two")]
    assert info["model"] == model_spec
    assert info["dim"] == 128
    assert info["last_run"]["added"] == 1
    # re-indexing one root never sweeps the other
    imagegen.photo(3).save(tmp_path / "two" / "three.png")
    assert index_json(cli)["added"] == 1
    (tmp_path / "two" / "two.png").unlink()
    assert index_json(cli, tmp_path / "one")["removed"] == 0
    assert index_json(cli)["removed"] == 1


def test_an_emptied_root_keeps_its_images_until_forgotten(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    """An unmounted drive looks like an empty folder: a nightly run must not wipe its photos from the index."""
    (tmp_path / "drive").mkdir()
    imagegen.photo(1).save(tmp_path / "drive" / "x.png")
    index_json(cli, tmp_path / "drive", "--model", model_spec)
    (tmp_path / "drive" / "x.png").unlink()
    report = index_json(cli)
    assert report["removed"] == 0
    assert "forget" in report["failed"][0]["error"]
    assert cli("info", "--json").json()["images"] == 1
    result = cli("forget", tmp_path / "drive", "--json")
    assert result.exit_code == 0 and result.json()["removed"] == 1
    info = cli("info", "--json").json()
    assert (info["images"], info["roots"]) == (0, [])
    assert cli("forget", tmp_path / "elsewhere").exit_code == 2


def test_text_output_is_a_table(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str) -> None:
    result = cli("index", photos.root, "--model", model_spec)
    assert result.exit_code == 0
    assert f"{len(photos.good)} added" in result.stdout
    out = cli("search", "a sunset", "-k", "2")
    assert out.exit_code == 0
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "path"]
    assert len(lines) == 3 and lines[1].split()[0] == "1"
    assert cli("index", "--quiet").stdout == ""


def test_unchanged_bad_files_are_not_retried_but_fixed_ones_are(cli: Cli, photos: imagegen.PhotoFolder,
                                                                model_spec: str) -> None:
    index_json(cli, photos.root, "--model", model_spec)
    imagegen.photo(4242).save(photos.root / "bad_empty.jpg")  # the user fixed it
    report = index_json(cli)
    assert report["added"] == 1 and report["failed"] == []
    assert cli("info", "--json").json()["failing_files"] == len(photos.bad) - 1


@pytest.mark.parametrize("which", ["missing", "file"])
def test_bad_folder_argument(cli: Cli, tmp_path: Path, model_spec: str, which: str) -> None:
    target = tmp_path / "nope"
    if which == "file":
        target.write_text("x")
    result = cli("index", target, "--model", model_spec)
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert ("folder not found" if which == "missing" else "not a folder") in result.stderr


def _eleven_photos(root: Path) -> Path:
    root.mkdir()
    for i in range(11):
        (root / f"{i:02d}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(500 + i, (320, 240))))
    return root


def _index_in_batches(root: Path, index: Path, encoder, batch_size: int):  # noqa: ANN001, ANN202
    """(report, {file name: stored vector}) of one run over ``root`` with ``encoder``, decoding in threads."""
    from indexer.options import Options

    return index_folder(root, index, encoder, Options(worker_kind="threads", batch_size=batch_size, workers=2))


def _each_on_its_own_file(root: Path, encoder, stored: dict) -> None:  # noqa: ANN001
    names = sorted(stored)
    alone = np.stack([encoder.encode_images(encoder.image_transform(open_image(root / n).convert("RGB"))[None])[0]
                      for n in names])
    distance = np.abs(np.stack([stored[n] for n in names])[:, None, :] - alone[None, :, :]).max(axis=2)
    assert distance.diagonal().max() < 1e-4  # each file's stored vector is its own...
    assert (distance + np.eye(len(names))).min() > 1e-3  # ...and no other file's


def test_the_model_gets_the_next_batch_before_the_last_ones_vectors_are_stored(tmp_path: Path, model_spec: str) -> None:
    """On a GPU the model computes batch N while the indexing thread stores N-1: the run queues a batch before it
    collects the one before. Every vector still lands on its own file."""
    from clipsearch.encoders import load_encoder

    root = _eleven_photos(tmp_path / "p")
    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    order: list[str] = []
    start_images = encoder.start_images

    def recording(batch):  # noqa: ANN001, ANN202
        n = sum(1 for step in order if step.startswith("start"))
        order.append(f"start {n}")
        pending = start_images(batch)
        result = pending.result
        pending.result = lambda: (order.append(f"result {n}"), result())[1]  # type: ignore[method-assign]
        return pending

    encoder.start_images = recording  # type: ignore[method-assign]
    report, stored = _index_in_batches(root, tmp_path / "index", encoder, 3)
    assert report.added == 11
    assert 0 < report.model_seconds < report.seconds
    assert order == ["start 0", "start 1", "result 0", "start 2", "result 1", "start 3", "result 2", "result 3"]
    _each_on_its_own_file(root, encoder, stored)


def _gpu_memory(encoder, fits: int, sizes: list[int]) -> None:  # noqa: ANN001
    """Make ``encoder`` fail as a GPU out of memory does on batches of more than ``fits`` images (the allocator raises
    torch.cuda.OutOfMemoryError when the batch's tensors are made); ``sizes`` records every batch tried."""
    import torch

    start_images = encoder.start_images

    def limited(batch):  # noqa: ANN001, ANN202
        sizes.append(len(batch))
        if len(batch) > fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return start_images(batch)

    encoder.start_images = limited  # type: ignore[method-assign]


def test_a_gpu_out_of_memory_halves_the_batch_and_the_run_goes_on(tmp_path: Path, model_spec: str) -> None:
    from clipsearch.encoders import load_encoder

    root = _eleven_photos(tmp_path / "p")
    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    sizes: list[int] = []
    _gpu_memory(encoder, 2, sizes)
    report, stored = _index_in_batches(root, tmp_path / "index", encoder, 8)
    assert report.added == 11 and report.failed == []
    assert sizes == [8, 4, 2, 2, 2, 2, 2, 1]  # 8 -> 4 -> 2 fits: the first 8 files as 2 + 2 + 2 + 2, the last 3 as 2 + 1
    assert report.notes == ["the GPU ran out of memory with 8 images per batch; the run went on with 2 "
                            "(--batch-size 2 starts there)"]
    assert report.as_dict()["notes"] == report.notes
    _each_on_its_own_file(root, encoder, stored)


def test_a_model_too_big_for_the_gpu_is_a_clear_error_that_keeps_what_was_indexed(tmp_path: Path,
                                                                                   model_spec: str) -> None:
    from clipsearch.encoders import load_encoder
    from clipsearch.errors import UserError

    root = _eleven_photos(tmp_path / "p")
    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    report, _ = _index_in_batches(root, tmp_path / "index", encoder, 4)  # 11 files in
    assert "notes" not in report.as_dict()
    for i in range(11, 14):
        (root / f"{i:02d}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(500 + i, (320, 240))))
    _gpu_memory(encoder, 0, [])
    with pytest.raises(UserError, match="ran out of memory with this model even one image at a time"):
        _index_in_batches(root, tmp_path / "index", encoder, 4)
    from clipsearch.store import StoreReader

    assert StoreReader.open(tmp_path / "index").info()["images"] == 11


def test_gpu_out_of_memory_through_the_cli(cli: Cli, tmp_path: Path, model_spec: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The note the user sees when the run shrank its batches, and the one-line error when nothing fits."""
    import clipsearch.encoders

    fits = [2]
    load_encoder = clipsearch.encoders.load_encoder

    def on_a_small_gpu(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        encoder = load_encoder(*args, **kwargs)
        _gpu_memory(encoder, fits[0], [])
        return encoder

    monkeypatch.setattr(clipsearch.encoders, "load_encoder", on_a_small_gpu)
    root = _eleven_photos(tmp_path / "p")
    result = cli("index", root, "--model", model_spec, "--batch-size", "8")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("11 added")
    assert ("clipsearch: note: the GPU ran out of memory with 8 images per batch; the run went on with 2 "
            "(--batch-size 2 starts there)") in result.stderr.splitlines()

    (root / "new.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(900, (320, 240))))
    fits[0] = 0
    result = cli("index", "--batch-size", "8")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "clipsearch: error: the GPU ran out of memory with this model even one image at a time: try --device cpu "
        "or a smaller model (everything indexed so far is kept)"]
