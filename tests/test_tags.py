"""Tags in the index (issue 20): assigned by `index` from a vocabulary, right on held-out renderings, following every
change of the folder, the vocabulary and the model, and searchable."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from clipsearch.store import StoreReader
from tests.conftest import ROOT, Cli, search_json

sys.path.insert(0, str(ROOT / "data" / "demo_model"))
import shapes  # noqa: E402

HELD_OUT_SEED = 6006
VOCABULARY = [f"a {colour} {shape}" for colour, shape in shapes.CLASSES]


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, Path]:
    """(photos, vocabulary file): held-out renderings, two per class, and the demo model's colours and shapes."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for colour, shape, k, image in shapes.held_out(HELD_OUT_SEED, 2):
        image.save(photos / f"{colour}-{shape}-{k}.{'png' if k else 'jpg'}")
    vocabulary = tmp_path / "shapes.txt"
    vocabulary.write_text("\n".join(VOCABULARY) + "\n")
    return photos, vocabulary


def tags_by_name(index: Path) -> dict[str, set[str]]:
    with StoreReader.open(index) as store:
        paths = store.catalog.paths(store.catalog.file_ids())
        tagged = store.catalog.tags.of_ids(paths)
    return {Path(path).name: {tag for tag, _ in tagged.get(file_id, [])} for file_id, path in paths.items()}


def truth(name: str) -> str:
    colour, shape, _ = Path(name).stem.split("-")
    return f"{colour} {shape}"


def precision_recall(tags: dict[str, set[str]]) -> tuple[float, float]:
    assigned = sum(len(t) for t in tags.values())
    right = sum(truth(name) in t for name, t in tags.items())
    return right / max(assigned, 1), right / len(tags)


def test_tags_are_right_on_held_out_renderings(cli: Cli, index_dir: Path, library: tuple[Path, Path]) -> None:
    photos, vocabulary = library
    report = cli("index", photos, "--model", "demo", "--vocabulary", vocabulary, "--json").json()
    assert report["added"] == report["tagged"] == 2 * len(VOCABULARY)  # type: ignore[index]
    precision, recall = precision_recall(tags_by_name(index_dir))
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)

    listed = cli("tags", "--json").json()
    assert sum(r["photos"] for r in listed) == sum(len(t) for t in tags_by_name(index_dir).values())  # type: ignore
    assert {r["tag"] for r in listed} <= {label.removeprefix("a ") for label in VOCABULARY}  # type: ignore[union-attr]
    hits = search_json(cli, "a photo", "--tag", "red star", "-k", "100")
    assert hits and all(h["path"].split("/")[-1].startswith("red-star-") for h in hits)
    assert all("red star" in h["tags"] for h in hits)
    assert search_json(cli, "a photo", "--tag", "RED STAR", "--tag", "blue circle") == []  # both tags: none has
    info = cli("info", "--json").json()
    assert info["tags"] == len(listed) and info["vocabulary"] == str(vocabulary)  # type: ignore[index]
    unknown = cli("search", "a photo", "--tag", "unicorn")
    assert unknown.exit_code == 0 and "no photo has the tag unicorn" in unknown.stderr


def test_tags_follow_adds_deletes_renames_and_reindex(cli: Cli, index_dir: Path, library: tuple[Path, Path],
                                                       model_spec: str) -> None:
    photos, vocabulary = library
    extra = photos.parent / "later"
    extra.mkdir()
    for name in ("red-star-0.jpg", "blue-circle-1.png"):
        shutil.move(photos / name, extra / name)
    assert cli("index", photos, "--model", "demo", "--vocabulary", vocabulary).exit_code == 0
    before = tags_by_name(index_dir)

    shutil.move(extra / "red-star-0.jpg", photos / "red-star-0.jpg")  # an add
    (photos / "green-square-0.jpg").unlink()  # a delete
    (photos / "pink-cross-1.png").rename(photos / "renamed-pink-cross.png")  # a rename: its tags go with it
    report = cli("index", "--json").json()
    assert (report["added"], report["removed"], report["renamed"]) == (1, 1, 1)  # type: ignore[index]
    assert report["tagged"] == 1  # type: ignore[index]  # only the new content; the rename reused its tags
    after = tags_by_name(index_dir)
    assert "red star" in after["red-star-0.jpg"] and "green-square-0.jpg" not in after
    assert after["renamed-pink-cross.png"] == before["pink-cross-1.png"]
    with StoreReader.open(index_dir) as store:  # tags of a content that left are gone with it
        assert store.catalog.tags.counts() == sorted(_counted(after).items(), key=lambda kv: (-kv[1], kv[0]))

    switched = cli("index", "--reindex", "--model", model_spec, "--json").json()  # random weights: tags change
    assert switched["tagged"] == len(after)  # type: ignore[index]
    assert sum(len(t) for t in tags_by_name(index_dir).values()) < sum(len(t) for t in after.values()) / 4
    back = cli("index", "--reindex", "--model", "demo", "--json").json()
    assert back["tagged"] == len(after) and tags_by_name(index_dir) == after  # type: ignore[index]


def _counted(tags: dict[str, set[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for found in tags.values():
        for tag in found:
            counts[tag] = counts.get(tag, 0) + 1
    return counts


def test_a_new_vocabulary_retags_from_stored_vectors(cli: Cli, index_dir: Path, library: tuple[Path, Path]) -> None:
    photos, vocabulary = library
    assert cli("index", photos, "--model", "demo").exit_code == 0  # the built-in vocabulary
    assert cli("info", "--json").json()["vocabulary"] == "builtin"  # type: ignore[index]
    again = cli("index", "--json").json()
    assert again["tagged"] == 0  # type: ignore[index]  # nothing changed, nothing re-tagged
    switched = cli("index", "--vocabulary", vocabulary, "--json").json()
    assert (switched["added"], switched["model_seconds"], switched["tagged"]) == (0, 0, len(tags_by_name(index_dir)))
    assert precision_recall(tags_by_name(index_dir))[1] >= 0.9
    vocabulary.write_text("\n".join(VOCABULARY[:6]) + "\n")  # the file edited: its labels changed
    edited = cli("index", "--json").json()
    assert edited["tagged"] == len(tags_by_name(index_dir))  # type: ignore[index]
    assert {t for found in tags_by_name(index_dir).values() for t in found} <= {v[2:] for v in VOCABULARY[:6]}
    off = cli("index", "--vocabulary", "none", "--json").json()
    assert off["tagged"] == 0 and cli("tags", "--json").json() == []  # type: ignore[index]
    missing = cli("index", "--vocabulary", photos / "nope.txt")
    assert missing.exit_code == 2 and "label file not found" in missing.stderr


def test_a_run_stopped_while_tagging_keeps_what_it_tagged(cli: Cli, index_dir: Path, library: tuple[Path, Path],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM in the tag stage: the blocks tagged are committed, the run is logged as interrupted, and
    the next run tags the rest, to the same tags as a run never stopped."""
    from clipsearch.store import StoreWriter
    from indexer import tag
    from indexer.job import IndexJob

    photos, vocabulary = library
    reference = tmp_path / "reference"
    assert cli("index", photos, "--model", "demo", "--vocabulary", vocabulary, "--index", reference).exit_code == 0
    assert cli("index", photos, "--model", "demo", "--vocabulary", "none").exit_code == 0
    monkeypatch.setattr(tag, "BLOCK", 16)
    calls = {"n": 0}
    put_tags = StoreWriter.put_tags

    def stopped_at_the_third_block(self: StoreWriter, found: list) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        put_tags(self, found)

    monkeypatch.setattr(StoreWriter, "put_tags", stopped_at_the_third_block)
    report = IndexJob(index_dir, vocabulary=str(vocabulary), quiet=True).run()
    assert report.interrupted and report.tagged == 32  # two blocks of 16 committed
    with StoreReader.open(index_dir) as store:
        assert len(store.catalog.tags.of_ids(store.catalog.file_ids())) <= 32
    monkeypatch.setattr(StoreWriter, "put_tags", put_tags)
    rest = cli("index", "--json").json()
    assert rest["tagged"] == 2 * len(VOCABULARY) - 32 and rest["added"] == 0  # type: ignore[index]
    assert tags_by_name(index_dir) == tags_by_name(reference)
