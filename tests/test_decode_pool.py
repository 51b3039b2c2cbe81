"""Decode worker processes: the same pictures as threads, one file's failure (even a crash) costs only that file."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from clipsearch import images
from clipsearch.encoders.geometry import Plan
from clipsearch.errors import UserError
from tests import hostile, imagegen
from tests.conftest import Cli, index_folder
from tests.hostile import POISON_SIZE, CrashOnPoison

pytestmark = pytest.mark.skipif(not __import__("indexer.decode_pool").decode_pool.available(),
                                reason="decode worker processes: Linux")
AS_DECODED = Plan(())  # the upright picture as a uint8 array, no resize


def _folder(root: Path, count: int = 8) -> Path:
    root.mkdir()
    for i in range(count):
        size = (1600, 1200) if i % 3 == 0 else (320, 240)
        (root / f"{i:02d}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(300 + i, size)))
    return root


def _index(root: Path, index: Path, spec: str, kind: str, crash_on_poison: bool = False,
           no_start: bool = False) -> tuple[object, dict[str, np.ndarray]]:
    from clipsearch.encoders import load_encoder
    from indexer.options import Options

    encoder = load_encoder(spec, device="cpu", precision="fp32")
    if crash_on_poison:  # what the worker processes receive of the model: its plan
        assert encoder.staged_transform is not None
        encoder.staged_transform = dataclasses.replace(encoder.staged_transform,
                                                       plan=CrashOnPoison(encoder.staged_transform.plan))
    if no_start:
        assert encoder.staged_transform is not None
        encoder.staged_transform = dataclasses.replace(encoder.staged_transform,
                                                       plan=hostile.NoStart(encoder.staged_transform.plan))
    return index_folder(root, index, encoder, Options(worker_kind=kind, batch_size=4, workers=2))


def test_processes_embed_what_threads_embed_and_leave_no_child_behind(tmp_path: Path, model_spec: str) -> None:
    root = _folder(tmp_path / "p")
    (root / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    by_threads, threads = _index(root, tmp_path / "a", model_spec, "threads")
    by_processes, processes = _index(root, tmp_path / "b", model_spec, "processes")
    assert by_processes.added == by_threads.added == 8  # type: ignore[attr-defined]
    assert [f["path"] for f in by_processes.failed] == [str(root / "garbage.jpg")]  # type: ignore[attr-defined]
    assert by_processes.failed == by_threads.failed  # type: ignore[attr-defined]
    assert threads.keys() == processes.keys()
    for name in threads:
        np.testing.assert_allclose(processes[name], threads[name], atol=1e-5)
    assert multiprocessing.active_children() == []


def test_a_decoder_crash_costs_only_that_file(tmp_path: Path, model_spec: str) -> None:
    """A segfault in a decoder library (a hostile file) kills a worker process, not the run."""
    root = _folder(tmp_path / "p")
    (root / "03b-poison.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(99, POISON_SIZE)))
    report, vectors = _index(root, tmp_path / "index", model_spec, "processes", crash_on_poison=True)
    assert report.added == 8  # type: ignore[attr-defined]
    assert report.failed == [{"path": str(root / "03b-poison.jpg"),  # type: ignore[attr-defined]
                              "error": "the image decoder crashed on this file"}]
    assert sorted(vectors) == [f"{i:02d}.jpg" for i in range(8)]
    assert multiprocessing.active_children() == []


def test_workers_that_cannot_start_leave_the_run_to_threads_and_fail_no_file(tmp_path: Path, model_spec: str) -> None:
    """Were every file sent to workers that cannot start, each would fail as a decoder crash and be remembered as
    failed until it changes. The pool checks that one starts; if none can, the run decodes in threads, and says so.
    Asked for processes, the run stops with one line instead."""
    root = _folder(tmp_path / "p")
    report, vectors = _index(root, tmp_path / "a", model_spec, "auto", no_start=True)
    assert report.added == 8 and report.failed == []  # type: ignore[attr-defined]
    assert any("could not start" in note for note in report.notes)  # type: ignore[attr-defined]
    assert sorted(vectors) == [f"{i:02d}.jpg" for i in range(8)]
    with pytest.raises(UserError, match="could not start.*--worker-kind threads"):
        _index(root, tmp_path / "b", model_spec, "processes", no_start=True)
    assert multiprocessing.active_children() == []


def test_a_file_that_changed_after_it_was_hashed_is_not_embedded_as_the_old_content(tmp_path: Path) -> None:
    from clipsearch.hashing import content_hash
    from indexer.decode_pool import DecodePool

    path = tmp_path / "a.jpg"
    data = imagegen.jpeg_bytes(imagegen.photo(1, (320, 240)))
    path.write_bytes(data)
    pool = DecodePool(AS_DECODED, 64, images.DEFAULT_MAX_PIXELS, 1)
    try:
        width, height, picture, _, _, _ = pool.decode(str(path), len(data), content_hash(data))
        assert (width, height) == (320, 240) and picture.dtype == np.uint8 and picture.ndim == 3
        with pytest.raises(images.ImageError, match="changed while"):
            pool.decode(str(path), len(data), content_hash(data + b"x"))
        with pytest.raises(images.ImageError, match="cannot read"):
            pool.decode(str(tmp_path / "gone.jpg"), 10, b"")
    finally:
        pool.close()


def test_auto_uses_processes_for_models_whose_preprocessing_stops_at_uint8() -> None:
    from indexer.decoders import in_processes
    from indexer.options import Options

    open_clip_like = SimpleNamespace(device="cpu", staged_transform=object())
    hf_like = SimpleNamespace(device="cuda:0", staged_transform=None)  # a Hugging Face processor: no uint8 stage
    assert in_processes(Options(), open_clip_like, 2)  # type: ignore[arg-type]
    assert not in_processes(Options(), hf_like, 16)  # type: ignore[arg-type]
    assert not in_processes(Options(worker_kind="threads"), open_clip_like, 16)  # type: ignore[arg-type]
    assert not in_processes(Options(), open_clip_like, 0)  # type: ignore[arg-type]  # --workers 0: in line


def test_an_unknown_worker_kind_is_one_line(cli: Cli, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--worker-kind"):
        from indexer.options import Options

        Options(worker_kind="fibers")
    result = cli("index", _folder(tmp_path / "p", 1), "--model", "demo", "--worker-kind", "fibers")
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and "--worker-kind" in result.stderr


def _tasks(paths: list[Path]) -> list[object]:
    from indexer.items import Task
    from indexer.walk import Found

    return [Task(Found(str(p), p.stat().st_size if p.exists() else 0, 0)) for p in paths]


def test_a_chunk_of_files_is_one_call_to_a_child_and_each_file_fails_alone(tmp_path: Path, model_spec: str) -> None:
    """``Router.route_and_decode`` sends the files a chunk must decode to one child in one call (a call through the
    process pool costs the indexing process about as much as decoding a small photo); the results come back in
    order, the same pictures as decoding in threads, and a bad file costs only itself."""
    from clipsearch.encoders import load_encoder
    from indexer.decode_pool import DecodePool
    from indexer.decoders import ProcessDecoder, ThreadDecoder
    from indexer.engine import Contents
    from indexer.items import Decoded, Failed, Reused
    from indexer.route import Router

    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    root = _folder(tmp_path / "p", 5)
    (root / "02b-garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    (root / "03b-empty.jpg").write_bytes(b"")
    paths = sorted(root.iterdir())
    known = imagegen.jpeg_bytes(imagegen.photo(300, (1600, 1200)))  # the content of 00.jpg: already stored

    class Counting(DecodePool):
        calls: list[int] = []

        def decode_many(self, requests):  # noqa: ANN001, ANN202
            self.calls.append(len(requests))
            return super().decode_many(requests)

    assert encoder.staged_transform is not None
    pool = Counting(encoder.staged_transform.plan, encoder.image_size, images.DEFAULT_MAX_PIXELS, 2)
    from clipsearch.hashing import content_hash

    stored = Contents(lambda d: d == content_hash(known))
    try:
        by_process = Router(lambda: encoder, stored, lambda: ProcessDecoder(pool)).route_and_decode(_tasks(paths))
    finally:
        pool.close()
    threads = ThreadDecoder.for_encoder(encoder, images.DEFAULT_MAX_PIXELS)
    by_thread = Router(lambda: encoder, stored, lambda: threads).route_and_decode(_tasks(paths))
    assert Counting.calls == [5]  # 01, 02, 02b, 03, 04: not the stored 00, not the empty file
    assert [Path(item.task.path).name for item in by_process] == [p.name for p in paths]
    outcome = {Path(item.task.path).name: item for item in by_process}
    assert isinstance(outcome["00.jpg"], Reused) and outcome["03b-empty.jpg"] == Failed(outcome["03b-empty.jpg"].task,
                                                                                           "empty file")
    assert isinstance(outcome["02b-garbage.jpg"], Failed)
    for a, b in zip(by_process, by_thread):
        assert type(a) is type(b)
        if isinstance(a, Failed):
            assert a == b
        elif isinstance(a, Decoded):
            assert isinstance(b, Decoded) and (a.width, a.height) == (b.width, b.height)
            assert a.pixels.dtype == b.pixels.dtype and bool((a.pixels == b.pixels).all())
    assert multiprocessing.active_children() == []


def test_a_crash_in_a_chunk_costs_only_the_file_that_crashed(tmp_path: Path) -> None:
    from clipsearch.hashing import content_hash
    from indexer.decode_pool import DecodePool

    datas = [imagegen.jpeg_bytes(imagegen.photo(10 + i, POISON_SIZE if i == 2 else (320, 240))) for i in range(4)]
    paths = []
    for i, data in enumerate(datas):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(data)
    pool = DecodePool(CrashOnPoison(AS_DECODED), 64, images.DEFAULT_MAX_PIXELS, 2)
    try:
        results = pool.decode_many([(str(p), len(d), content_hash(d)) for p, d in zip(paths, datas)])
        assert pool.crashes == 2  # the chunk broke a pool, then its replacement: then each file went alone
    finally:
        pool.close()
    assert [type(r).__name__ for r in results] == ["tuple", "tuple", "ImageError", "tuple"]
    assert str(results[2]) == "the image decoder crashed on this file"
    assert [r[:2] for r in results if isinstance(r, tuple)] == [(320, 240)] * 3
    assert multiprocessing.active_children() == []


def test_workers_do_not_inherit_a_lock_another_thread_of_the_run_holds(tmp_path: Path) -> None:
    """The run has threads (walk and catalog, readers, a progress bar): a worker forked from it while one of them
    held a lock (SQLite's allocator mutex, in the hang this guards against) would wait for it forever. Workers
    come from a server process that never had those threads, and start with every lock free."""
    import threading

    from clipsearch.hashing import content_hash
    from indexer.decode_pool import DecodePool

    data = imagegen.jpeg_bytes(imagegen.photo(5, (320, 240)))
    (tmp_path / "a.jpg").write_bytes(data)
    release, finished, results = threading.Event(), threading.Event(), []

    def hold() -> None:
        with hostile.HELD:
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    pool = DecodePool(hostile.TakesLock(AS_DECODED), 64, images.DEFAULT_MAX_PIXELS, 1)

    def decode() -> None:
        results.extend(pool.decode_many([(str(tmp_path / "a.jpg"), len(data), content_hash(data))]))
        finished.set()

    threading.Thread(target=decode, daemon=True).start()
    started_free = finished.wait(60)
    release.set()
    holder.join()
    if started_free:
        pool.close()  # a stuck worker would keep this waiting: it ends with the test's process instead
    assert started_free, "the worker waited for a lock held in the parent when it started"
    assert [r[:2] for r in results] == [(320, 240)]  # type: ignore[index]
