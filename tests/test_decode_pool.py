"""Decode worker processes: the same pictures as threads, one file's failure (even a crash) costs only that file."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from clipsearch import images
from clipsearch.errors import UserError
from tests import imagegen
from tests.conftest import Cli

pytestmark = pytest.mark.skipif(not __import__("indexer.decode_pool").decode_pool.available(),
                                reason="worker processes need fork (Linux)")


def _folder(root: Path, count: int = 8) -> Path:
    root.mkdir()
    for i in range(count):
        size = (1600, 1200) if i % 3 == 0 else (320, 240)
        (root / f"{i:02d}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(300 + i, size)))
    return root


CRASH = b"CRASH-ME"  # trailing bytes after a JPEG's end: still a JPEG to Pillow


def crash_on_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make decoding a file that ends with ``CRASH`` kill its process, as a segfault in a decoder library would."""
    real = images.decode

    def crashing(data: bytes, *args: object, **kwargs: object) -> images.Decoded:
        if data.endswith(CRASH):
            os.kill(os.getpid(), signal.SIGSEGV)  # only ever in a forked child: they inherit this patch
        return real(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "decode", crashing)


def _index(root: Path, index: Path, spec: str, kind: str) -> tuple[object, dict[str, np.ndarray]]:
    from clipsearch.encoders import load_encoder
    from clipsearch.store import ModelRecord, StoreWriter
    from indexer.run import Options, index_folders

    encoder = load_encoder(spec, device="cpu", precision="fp32")
    with StoreWriter.open(index) as store:
        store.bind_model(ModelRecord(encoder.spec, encoder.fingerprint, encoder.dim))
        report = index_folders(store, [str(root)], lambda: encoder, Options(worker_kind=kind, batch_size=4, workers=2))
        vectors = {}
        for ids, matrix in store.iter_vectors():
            paths = store.paths(ids.tolist())
            for i, vector in zip(ids.tolist(), matrix):
                vectors[Path(paths[i]).name] = vector
    return report, vectors


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


def test_a_decoder_crash_costs_only_that_file(tmp_path: Path, model_spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A segfault in a decoder library (a hostile file) kills a worker process, not the run."""
    root = _folder(tmp_path / "p")
    poison = imagegen.jpeg_bytes(imagegen.photo(99, (320, 240))) + CRASH
    (root / "03b-poison.jpg").write_bytes(poison)
    crash_on_marker(monkeypatch)
    report, vectors = _index(root, tmp_path / "index", model_spec, "processes")
    assert report.added == 8  # type: ignore[attr-defined]
    assert report.failed == [{"path": str(root / "03b-poison.jpg"),  # type: ignore[attr-defined]
                              "error": "the image decoder crashed on this file"}]
    assert sorted(vectors) == [f"{i:02d}.jpg" for i in range(8)]
    assert multiprocessing.active_children() == []


def test_a_file_that_changed_after_it_was_hashed_is_not_embedded_as_the_old_content(tmp_path: Path) -> None:
    from clipsearch.store import content_hash
    from indexer.decode_pool import DecodePool

    path = tmp_path / "a.jpg"
    data = imagegen.jpeg_bytes(imagegen.photo(1, (320, 240)))
    path.write_bytes(data)
    pool = DecodePool(lambda im: __import__("torch").from_numpy(np.asarray(im)), 64, images.DEFAULT_MAX_PIXELS, 1)
    try:
        width, height, picture = pool.decode(str(path), len(data), content_hash(data))
        assert (width, height) == (320, 240) and picture.dtype == np.uint8 and picture.ndim == 3
        with pytest.raises(images.ImageError, match="changed while"):
            pool.decode(str(path), len(data), content_hash(data + b"x"))
        with pytest.raises(images.ImageError, match="cannot read"):
            pool.decode(str(tmp_path / "gone.jpg"), 10, b"")
    finally:
        pool.close()


def test_auto_uses_processes_for_models_whose_preprocessing_stops_at_uint8() -> None:
    from indexer.run import Options, decode_in_processes

    open_clip_like = SimpleNamespace(device="cpu", staged_transform=object())
    hf_like = SimpleNamespace(device="cuda:0", staged_transform=None)  # a Hugging Face processor: no uint8 stage
    assert decode_in_processes(Options(), open_clip_like, 2)  # type: ignore[arg-type]
    assert not decode_in_processes(Options(), hf_like, 16)  # type: ignore[arg-type]
    assert not decode_in_processes(Options(worker_kind="threads"), open_clip_like, 16)  # type: ignore[arg-type]
    assert not decode_in_processes(Options(), open_clip_like, 0)  # type: ignore[arg-type]  # --workers 0: in line


def test_an_unknown_worker_kind_is_one_line(cli: Cli, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--worker-kind"):
        from indexer.run import Options

        Options(worker_kind="fibers")
    result = cli("index", _folder(tmp_path / "p", 1), "--model", "demo", "--worker-kind", "fibers")
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and "--worker-kind" in result.stderr


def _tasks(paths: list[Path]) -> list[object]:
    from indexer.reader import Task
    from indexer.walk import Found

    return [Task(Found(str(p), p.stat().st_size if p.exists() else 0, 0), None) for p in paths]


def test_a_chunk_of_files_is_one_call_to_a_child_and_each_file_fails_alone(tmp_path: Path, model_spec: str) -> None:
    """``Reader.read_many`` sends the files a chunk must decode to one child in one call (a call through the
    process pool costs the indexing process about as much as decoding a small photo); the results come back in
    order, the same pictures as decoding in threads, and a bad file costs only itself."""
    from clipsearch.encoders import load_encoder
    from indexer.decode_pool import DecodePool
    from indexer.reader import Reader

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
    pool = Counting(encoder.staged_transform.to_uint8, encoder.image_size, images.DEFAULT_MAX_PIXELS, 2)
    from clipsearch.store import content_hash

    try:
        stored = content_hash(known)
        by_process = Reader(lambda: encoder, lambda d: d == stored, decode_pool=lambda: pool).read_many(_tasks(paths))
    finally:
        pool.close()
    by_thread = Reader(lambda: encoder, lambda d: d == stored).read_many(_tasks(paths))
    assert Counting.calls == [5]  # 01, 02, 02b, 03, 04: not the stored 00, not the empty file
    assert [Path(item.task.found.path).name for item in by_process] == [p.name for p in paths]
    outcome = {Path(item.task.found.path).name: (item.reused, item.error) for item in by_process}
    assert outcome["00.jpg"] == (True, None) and outcome["03b-empty.jpg"] == (False, "empty file")
    assert outcome["02b-garbage.jpg"][1] is not None
    for a, b in zip(by_process, by_thread):
        assert (a.width, a.height, a.error) == (b.width, b.height, b.error)
        assert (a.pixels is None) == (b.pixels is None)
        if a.pixels is not None:
            assert a.pixels.dtype == b.pixels.dtype and bool((a.pixels == b.pixels).all())
    assert multiprocessing.active_children() == []


def test_a_crash_in_a_chunk_costs_only_the_file_that_crashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch.store import content_hash
    from indexer.decode_pool import DecodePool

    datas = [imagegen.jpeg_bytes(imagegen.photo(10 + i, (320, 240))) for i in range(4)]
    datas[2] += CRASH
    paths = []
    for i, data in enumerate(datas):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(data)
    crash_on_marker(monkeypatch)
    pool = DecodePool(lambda im: __import__("torch").from_numpy(np.asarray(im)), 64, images.DEFAULT_MAX_PIXELS, 2)
    try:
        results = pool.decode_many([(str(p), len(d), content_hash(d)) for p, d in zip(paths, datas)])
        assert pool.crashes == 2  # the chunk broke a pool, then its replacement: then each file went alone
    finally:
        pool.close()
    assert [type(r).__name__ for r in results] == ["tuple", "tuple", "ImageError", "tuple"]
    assert str(results[2]) == "the image decoder crashed on this file"
    assert [r[:2] for r in results if isinstance(r, tuple)] == [(320, 240)] * 3
    assert multiprocessing.active_children() == []
