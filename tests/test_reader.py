"""The decode side of indexing: fast (draft) decoding finds what a full decode finds; one bad file costs one file."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch import images
from tests import imagegen
from tests.conftest import ROOT, Cli, cosine, index_folder, search_json

SIZES = [(4000, 3000), (3000, 4000), (1600, 1200), (1200, 900), (640, 480)]  # 12 MP, portrait, 2 MP, 1 MP, VGA
# Measured with the demo model (64 px): 0.998, 1.000, 1.000, 0.985, 1.000. At 1 MP the JPEG is decoded at 1/8
# scale (150x113) and resized 1.8x by the model's transform, and this noisy synthetic texture moves a little.
MIN_COSINE = {(1200, 900): 0.98}


def full_decode(data: bytes) -> Image.Image:
    """What a naive loop does: the whole picture at full resolution."""
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return [imagegen.jpeg_bytes(imagegen.photo(seed, size)) for seed, size in enumerate(SIZES)]


@pytest.mark.parametrize("input_size", [224, 256, 336])
def test_draft_decode_gives_the_model_the_same_pixels(jpegs: list[bytes], input_size: int) -> None:
    """open_clip's own eval transform on a draft decode vs on a full decode: the same picture to the model."""
    import open_clip

    transform = open_clip.image_transform(input_size, is_train=False)
    for data in jpegs:
        fast = images.decode(data, input_size)
        assert min(fast.image.size) >= input_size  # never below what the model needs
        a, b = transform(fast.image).numpy(), transform(full_decode(data)).numpy()
        std = np.array([0.26862954, 0.26130258, 0.27577711])[:, None, None]
        diff = np.abs(a - b) * std  # back to 0..1 pixel units
        assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.06, (Image.open(io.BytesIO(data)).size, diff.mean())


def test_draft_decode_embeds_like_a_full_decode(jpegs: list[bytes]) -> None:
    """The shipped demo model on photo-like JPEGs and on its own kind of pictures: cosine >= 0.99."""
    import torch

    from clipsearch.encoders import load_encoder

    sys.path.insert(0, str(ROOT / "data" / "demo_model"))
    import shapes

    encoder = load_encoder("demo", "cpu", "fp32")
    rng = np.random.default_rng(3)
    rendered = []
    for colour, shape in [("red", "star"), ("blue", "circle"), ("green", "square"), ("yellow", "triangle")]:
        small = shapes.render(colour, shape, rng, jpeg=False, blur=0.0)[0]
        scale = 2400 / max(small.size)  # as a camera would have taken it
        big = small.resize((round(small.width * scale), round(small.height * scale)), Image.Resampling.BICUBIC)
        rendered.append(imagegen.jpeg_bytes(big))
    for size, data in [*zip(SIZES, jpegs), *((None, r) for r in rendered)]:
        fast = encoder.image_transform(images.decode(data, encoder.image_size).image)
        full = encoder.image_transform(full_decode(data))
        a, b = encoder.encode_images(torch.stack([fast, full]))
        assert cosine(a, b) >= MIN_COSINE.get(size, 0.99), (size, cosine(a, b))


def test_one_bad_file_in_a_batch_costs_only_that_file(cli: Cli, tmp_path: Path, model_spec: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    good = []
    for i in range(9):
        path = folder / f"{i:02d}.jpg"
        path.write_bytes(imagegen.jpeg_bytes(imagegen.photo(100 + i, (320, 240))))
        good.append(path)
    whole = good[4].read_bytes()
    (folder / "04b-truncated.jpg").write_bytes(whole[: len(whole) // 3])  # in the middle of the second batch
    (folder / "07b-not-an-image.jpg").write_bytes(b"this is text, not a JPEG" * 10)
    result = cli("index", folder, "--model", model_spec, "--batch-size", "4", "--workers", "2", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["added"] == 9  # type: ignore[index]
    assert sorted(f["path"] for f in report["failed"]) == [str(folder / "04b-truncated.jpg"),  # type: ignore[index]
                                                           str(folder / "07b-not-an-image.jpg")]
    for path in good:  # every good neighbour of the bad files was embedded, and as itself
        hits = search_json(cli, "--image", str(path), "-k", "1")
        assert hits[0]["path"] == str(path) and hits[0]["score"] >= 0.99


@pytest.mark.parametrize("size_hint", [None, 0, 99, 100, 101, 10_000])
def test_a_file_is_read_whole_whatever_size_the_walk_saw(tmp_path: Path, size_hint: int | None) -> None:
    from indexer.file_bytes import read_file

    path = tmp_path / "f.jpg"
    data = bytes(range(100))
    path.write_bytes(data)
    assert read_file(str(path), size_hint) == data  # the walk's size is a hint: a file that changed since is whole


def test_reading_stops_just_past_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer import file_bytes

    path = tmp_path / "huge.jpg"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(file_bytes, "MAX_FILE_BYTES", 10)
    assert len(file_bytes.read_file(str(path), 100)) == 11
    assert len(file_bytes.read_file(str(path), 5)) == 11  # the file grew past the limit since the walk


def test_a_jpeg_goes_to_the_decoder_in_one_call_with_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow feeds decoders 64 KiB at a time; each call releases and retakes the GIL (bench/gil_contention.py)."""
    data = imagegen.jpeg_bytes(imagegen.photo(7, (2000, 1500)))
    assert len(data) > 4 * 65536
    calls = 0
    make_decoder = Image._getdecoder

    class Counting:
        def __init__(self, decoder: object) -> None:
            self.decoder = decoder

        def __getattr__(self, name: str) -> object:
            return getattr(self.decoder, name)

        def decode(self, buffer: bytes) -> tuple[int, int]:
            nonlocal calls
            calls += 1
            return self.decoder.decode(buffer)  # type: ignore[attr-defined]

    monkeypatch.setattr(Image, "_getdecoder", lambda *a, **k: Counting(make_decoder(*a, **k)))
    ours = images.decode(data, 224).image
    assert calls == 1
    calls = 0
    chunked = Image.open(io.BytesIO(data))
    chunked.draft("RGB", (224, 224))
    chunked.load()
    assert calls > 1  # Pillow's own way, for comparison: the same pixels
    assert np.array_equal(np.asarray(ours), np.asarray(images._reduce(chunked.convert("RGB"), 224)))
    with pytest.raises(images.ImageError):
        images.decode(data[: len(data) // 2], 224)  # a truncated file is still refused


def test_an_index_run_gives_the_gil_in_short_turns_and_then_restores_the_interval(tmp_path: Path,
                                                                                 model_spec: str) -> None:
    from clipsearch.encoders import load_encoder
    from indexer.concurrency import GIL_TURN_SECONDS
    from indexer.options import Options
    from indexer.report import Progress

    folder = tmp_path / "p"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(i, (320, 240))))
    seen: list[float] = []

    class Watching(Progress):
        def done(self, n: int = 1) -> None:
            seen.append(sys.getswitchinterval())

    before = sys.getswitchinterval()
    assert before > GIL_TURN_SECONDS
    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    report, _ = index_folder(folder, tmp_path / "index", encoder, Options(workers=2), Watching())
    assert report.added == 3
    assert seen and all(interval == pytest.approx(GIL_TURN_SECONDS) for interval in seen)
    assert sys.getswitchinterval() == before


def test_threads_read_ahead_but_decode_no_more_than_the_workers_at_once(tmp_path: Path, model_spec: str) -> None:
    """A run has twice as many reader threads as decode workers (files read and hashed ahead for worker processes);
    decoding in the threads themselves still runs ``workers`` at a time."""
    import threading
    import time

    from clipsearch.encoders import load_encoder
    from indexer.concurrency import bounded_map
    from indexer.decoders import ThreadDecoder
    from indexer.engine import Contents
    from indexer.items import Decoded, Task
    from indexer.route import Router, reader_threads

    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    tasks = []
    for i in range(12):
        path = tmp_path / f"{i:02d}.jpg"
        path.write_bytes(imagegen.jpeg_bytes(imagegen.photo(700 + i, (320, 240))))
        tasks.append([Task.for_path(str(path))])
    lock, now, most = threading.Lock(), [0], [0]

    def counted(*args):  # noqa: ANN002, ANN202
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.05)  # long enough for every free thread to arrive here if nothing held it back
        out = transform(*args)
        with lock:
            now[0] -= 1
        return out

    staged = encoder.staged_transform
    transform = staged.to_uint8 if staged else encoder.image_transform
    threads = ThreadDecoder(counted, encoder.image_size, images.DEFAULT_MAX_PIXELS, slots=2)
    reader = Router(lambda: encoder, Contents(), lambda: threads)
    assert reader_threads(2) == 4
    loaded = [item for items in bounded_map(reader.route_and_decode, tasks, reader_threads(2), 64) for item in items]
    assert len(loaded) == 12 and all(isinstance(item, Decoded) for item in loaded)
    assert most[0] == 2


def test_bounded_map_yields_each_result_as_it_finishes_and_keeps_at_most_window_calls_started() -> None:
    """The run's reader calls: results come back as they finish (a slow file does not hold up the ones after it),
    never more than ``window`` calls started and not yet taken (memory stays flat), and an error reaches the caller."""
    import threading
    import time

    from indexer.concurrency import bounded_map

    lock, started, taken, most = threading.Lock(), [0], [0], [0]

    def work(i: int) -> int:
        with lock:
            started[0] += 1
            most[0] = max(most[0], started[0] - taken[0])
        time.sleep(0.3 if i == 0 else 0.01)
        return i

    order = []
    for result in bounded_map(work, range(40), 4, 6):
        taken[0] += 1
        order.append(result)
    assert sorted(order) == list(range(40))
    assert order[0] != 0 and order.index(0) > 0  # the slow first call finished after later ones
    assert most[0] <= 6

    def failing(i: int) -> int:
        if i == 5:
            raise ValueError("file 5")
        return i

    with pytest.raises(ValueError, match="file 5"):
        list(bounded_map(failing, range(20), 2, 4))
