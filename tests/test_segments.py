"""The vectors in segment files (format 7): durable before the commit that points at them, compacted without losing a
live vector, verified by `check`, and rebuilt into a FAISS index by `check --repair` without the model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipsearch.store import FileRecord, ModelRecord, StoreReader, StoreWriter, check_index
from clipsearch.store import segments as segment_files
from tests.conftest import Cli

DIM = 32
HEADER = segment_files.HEADER


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def record(i: int) -> FileRecord:
    return FileRecord(f"/synthetic/{i:06d}.jpg", 1, 1, i.to_bytes(16, "little"), 1, 1)


def fill(index: Path, data: np.ndarray, start: int = 0) -> None:
    with StoreWriter.open(index) as store:
        if store.catalog.model is None:
            store.bind_model(ModelRecord("synthetic", "{}", DIM))
        store.begin_run([])
        for i, vector in enumerate(data, start=start):
            store.put(record(i), vector)
        store.finish({})


def stored(index: Path) -> dict[int, np.ndarray]:
    with StoreReader.open(index) as store:
        return {int(Path(p).stem): v for p, v in store.vectors.by_path().items()}


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from clipsearch.store import FileRecord, ModelRecord, StoreWriter, segments

index, first, more = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = np.random.default_rng(7).normal(size=(first + more, {dim})).astype("float32")
with StoreWriter.open(__import__("pathlib").Path(index)) as store:
    store.bind_model(ModelRecord("synthetic", "{{}}", {dim}))
    store.begin_run([])
    for i in range(first):
        store.put(FileRecord(f"/synthetic/{{i:06d}}.jpg", 1, 1, i.to_bytes(16, "little"), 1, 1), data[i])
    store.commit()
    print("committed", flush=True)
    written = segments.record
    def kill_before_the_commit(conn, rows):  # the rows are written and fsynced: die before the catalog points at them
        print("written", [list(r) for r in rows], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    segments.record = kill_before_the_commit
    for i in range(first, first + more):
        store.put(FileRecord(f"/synthetic/{{i:06d}}.jpg", 1, 1, i.to_bytes(16, "little"), 1, 1), data[i])
    store.commit()
"""


@pytest.mark.parametrize("first", [40, 0])
def test_a_writer_killed_between_segment_write_and_catalog_commit_loses_nothing_committed(
        tmp_path: Path, first: int) -> None:
    """SIGKILL after the segment rows are fsynced and before the catalog commit: the next writer cuts the rows nobody
    points at (or removes the file of a segment whose first commit never came); every committed vector is intact."""
    index = tmp_path / "idx"
    script = KILLED_WRITER.format(dim=DIM)
    done = subprocess.run([sys.executable, "-c", script, str(index), str(first), "25"], capture_output=True,
                          text=True, cwd=Path(__file__).parent.parent, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert f"written [[1, 32, 4, {first + 25}]]" in done.stdout  # the uncommitted rows did reach the file
    path = index / "segments" / "000001.seg"
    assert path.stat().st_size == HEADER + (first + 25) * DIM * 4
    data = np.random.default_rng(7).normal(size=(first + 25, DIM)).astype("float32")

    with StoreWriter.open(index) as store:  # the next writer: cut to what the catalog holds
        assert store.vectors.damaged() == []
        assert store.catalog.count() == first
        kept = {int(Path(p).stem): v for p, v in store.vectors.by_path().items()}
    if first:
        assert path.stat().st_size == HEADER + first * DIM * 4
    else:
        assert not path.exists()
    assert sorted(kept) == list(range(first))
    assert all(np.array_equal(kept[i], data[i]) for i in kept)
    fill(index, data[first:], start=first)  # and the run that follows stores the rest after them
    after = stored(index)
    assert sorted(after) == list(range(first + 25))
    assert all(np.array_equal(after[i], data[i]) for i in after)
    with StoreWriter.open(index) as store:
        assert check_index(store) == []


def test_compaction_keeps_every_live_vector_and_reclaims_the_rest(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_files, "ROWS_PER_SEGMENT", 100)
    index = tmp_path / "idx"
    data = unit(350, seed=1)
    fill(index, data)
    assert sorted(p.name for p in (index / "segments").iterdir()) == [f"00000{i}.{kind}" for i in (1, 2, 3, 4)
                                                                      for kind in ("seg", "sum")]
    keep = {i for i in range(350) if i % 3 == 0 or i >= 300}  # segments 1-3 keep a third, the last all it has
    with StoreWriter.open(index) as store:
        store.begin_run([])
        for i in keep:
            store.mark_seen(store.catalog.file_row(record(i).path).id)  # type: ignore[union-attr]
        assert len(store.sweep("/synthetic")) == 350 - len(keep)
        store.finish({})
        assert store.vectors.unreferenced_rows() == 0
    files = sorted(p.name for p in (index / "segments").glob("*.seg"))
    assert not (index / "segments" / "000001.sum").exists()
    assert "000001.seg" not in files and "000004.seg" in files  # the mostly dead ones rewritten, the live one kept
    total = sum((index / "segments" / f).stat().st_size - HEADER for f in files) // (DIM * 4)
    assert total == len(keep)
    after = stored(index)
    assert sorted(after) == sorted(keep)
    assert all(np.array_equal(after[i], data[i]) for i in keep)  # the same numbers, moved
    with StoreWriter.open(index) as store:
        assert check_index(store) == []
        hits = store.index_files.build().search(data[[3, 330]], 1)[1]  # the FAISS file did not need a rebuild
    with StoreReader.open(index) as store:
        ids = {Path(p).stem: i for i, p in store.catalog.paths(store.catalog.file_ids()).items()}
    assert hits[:, 0].tolist() == [ids["000003"], ids["000330"]]


def test_check_finds_vectors_a_segment_file_lost_and_repair_leaves_them_for_the_next_run(
        cli: Cli, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    sample = Path(__file__).parent.parent / "data" / "sample"
    assert cli("index", sample, "--index", index, "--model", "demo").exit_code == 0
    count = cli("info", "--index", index, "--json").json()["images"]  # type: ignore[index]
    segment = index / "segments" / "000001.seg"
    os.truncate(segment, segment.stat().st_size - 3 * 128 * 4)  # the last three vectors lost (a bad disk)
    for faiss_file in index.glob("vectors-*.faiss"):
        faiss_file.unlink()  # and the FAISS file with them

    found = cli("check", "--index", index, "--json")
    assert found.exit_code == 1
    problems = found.json()["problems"]  # type: ignore[index]
    assert any("3 stored vectors lost or damaged" in p for p in problems), problems
    assert any("no FAISS file" in n for n in found.json()["notes"])  # type: ignore[index]  # a note, not a problem
    preview = found.json()["lost_paths"]  # type: ignore[index]
    repaired = cli("check", "--repair", "--index", index, "--json")
    # exit 1: photos were dropped (the next run embeds them); exactly those the check said it would drop
    assert repaired.exit_code == 1 and repaired.json()["repaired"] is True  # type: ignore[index]
    assert repaired.json()["lost_paths"] == preview and repaired.json()["lost_photos"] == len(preview)  # type: ignore[index]
    assert cli("check", "--index", index, "--json").json()["ok"] is True  # type: ignore[index]
    left = cli("info", "--index", index, "--json").json()["images"]  # type: ignore[index]
    assert 3 <= count - left <= 6 and count - left == len(preview)  # the files of the three lost contents
    hits = json.loads(cli("search", "a red star", "--index", index, "--json", "-k", "3").stdout)
    assert len(hits) == 3  # from the FAISS file rebuilt out of the segments, without the model

    again = cli("index", "--index", index, "--json").json()  # the next run embeds the lost ones again, only them
    assert (again["added"], again["unchanged"]) == (count - left, left)  # type: ignore[index]
    assert cli("check", "--index", index, "--json").json()["ok"] is True  # type: ignore[index]
    assert cli("info", "--index", index, "--json").json()["images"] == count  # type: ignore[index]


def test_a_collection_that_becomes_large_during_a_run_goes_on_in_float16(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Small collections keep float32; the commit at which a run takes one past the large index's threshold switches
    the rows that follow to float16, and the run's end compacts the float32 ones into float16 too."""
    from clipsearch.store import vector_index

    real = vector_index.choose
    monkeypatch.setattr(vector_index, "choose", lambda n, dim, budget=0: "IVF16_HNSW32,PQ4" if n >= 200 else real(n, dim))
    index = tmp_path / "idx"
    data = unit(350, seed=4)
    with StoreWriter.open(index) as store:
        store.bind_model(ModelRecord("synthetic", "{}", DIM))
        store.begin_run([])
        for i, vector in enumerate(data):
            store.put(record(i), vector)
            if i % 100 == 99:
                store.commit()
        store.commit()
        kept = {int(Path(p).stem): v for p, v in store.vectors.by_path().items()}
        # float32 until the commit at 300 (the type needs 256 to train), float16 after
        assert all(np.array_equal(kept[i], data[i]) for i in range(300))
        assert all(np.array_equal(kept[i], data[i].astype("float16").astype("float32")) for i in range(300, 350))
        store.finish({})
        assert store.catalog.meta("index_built_as") == "IVF16_HNSW32,PQ4"
    after = stored(index)
    assert all(np.array_equal(after[i], data[i].astype("float16").astype("float32")) for i in range(350))
    files = list((index / "segments").glob("*.seg"))
    assert sum(p.stat().st_size - HEADER for p in files) == 350 * DIM * 2  # every row in float16, none left behind
    with StoreWriter.open(index) as store:
        assert check_index(store) == []
