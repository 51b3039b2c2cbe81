"""GPU JPEG decoding: which files go to nvJPEG, the tensor preprocessing, orientation, and the run around it.

The scheduling, fallback and bookkeeping run here on the CPU (libjpeg standing in
for nvJPEG through the same torchvision call); the tests marked ``needs_cuda``
decode with nvJPEG itself and are skipped without a GPU.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from clipsearch import images
from clipsearch.errors import UserError
from tests import imagegen
from tests.conftest import Cli, cosine, index_folder, wait_for

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def jpeg(im: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def test_only_files_nvjpeg_decodes_like_the_cpu_go_to_the_gpu() -> None:
    photo = imagegen.photo(1, (640, 480))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    wide = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any non-sRGB profile
    assert images.gpu_decodable_jpeg(jpeg(photo)) == images.JpegHeader(640, 480, 1)
    assert images.gpu_decodable_jpeg(jpeg(photo.convert("L"))) is not None
    assert images.gpu_decodable_jpeg(jpeg(photo, icc_profile=srgb)) is not None
    assert images.gpu_decodable_jpeg(imagegen.with_orientation(photo, 6)) == images.JpegHeader(640, 480, 6)
    assert images.gpu_decodable_jpeg(jpeg(photo, progressive=True)) is None  # nvJPEG: host-side, 10x slower
    assert images.gpu_decodable_jpeg(jpeg(photo.convert("CMYK"))) is None
    assert images.gpu_decodable_jpeg(jpeg(photo, icc_profile=wide)) is None  # colours need the profile
    png = io.BytesIO()
    photo.save(png, "PNG")
    assert images.gpu_decodable_jpeg(png.getvalue()) is None
    assert images.gpu_decodable_jpeg(b"\xff\xd8 not really\xff\xd9") is None
    assert images.gpu_decodable_jpeg(jpeg(photo)[:-300]) is None  # truncated
    assert images.gpu_decodable_jpeg(jpeg(photo), max_pixels=640 * 480 - 1) is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tensor_orientation_matches_pillow(orientation: int) -> None:
    from indexer.device_decode import upright

    rng = np.random.default_rng(orientation)
    im = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    expected = np.asarray(im.transpose(images._ORIENT[orientation]) if orientation in images._ORIENT else im)
    t = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    assert np.array_equal(upright(t, orientation).permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
@pytest.mark.parametrize("size", [(4000, 3000), (1200, 1600), (640, 480), (180, 120)])
def test_tensor_preprocess_gives_the_model_the_pixels_pillow_gives(resize_mode: str, size: tuple[int, int]) -> None:
    """open_clip's eval transform on our CPU decode vs its tensor version on a full decode (what nvJPEG hands over)."""
    import open_clip

    from clipsearch.encoders import tensor_preprocess
    from indexer.device_decode import decode_jpegs

    transform = open_clip.image_transform(224, is_train=False, resize_mode=resize_mode)
    on_tensor = tensor_preprocess.from_compose(transform)
    assert on_tensor is not None
    data = imagegen.jpeg_bytes(imagegen.photo(5, size))
    a = transform(images.decode(data, 224).image)
    b = on_tensor(decode_jpegs([data], torch.device("cpu"))[0])
    assert a.shape == b.shape
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    diff = ((a - b).abs() * std).numpy()  # 0..1 pixel units
    assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.06, (size, diff.mean())


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
def test_workers_stop_at_uint8_and_the_batch_is_normalised_exactly_as_the_pil_transform(resize_mode: str) -> None:
    import open_clip

    from clipsearch.encoders import tensor_preprocess

    transform = open_clip.image_transform(224, is_train=False, resize_mode=resize_mode)
    staged = tensor_preprocess.split_compose(transform)
    assert staged is not None
    pictures = [images.decode(imagegen.jpeg_bytes(imagegen.photo(seed, size)), 224).image
                for seed, size in enumerate([(640, 480), (300, 500), (100, 80)])]
    handed_over = [staged.to_uint8(p) for p in pictures]
    assert all(t.dtype == torch.uint8 and t.shape == (224, 224, 3) for t in handed_over)
    assert torch.equal(staged.finish(torch.stack(handed_over)), torch.stack([transform(p) for p in pictures]))


def test_a_batch_mixes_uint8_and_finished_inputs_in_order(model_spec: str) -> None:
    from clipsearch.encoders import load_encoder
    from indexer.embed import model_batch

    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    assert encoder.staged_transform is not None
    pictures = [images.decode(imagegen.jpeg_bytes(imagegen.photo(seed)), encoder.image_size).image for seed in range(4)]
    mixed = [encoder.staged_transform.to_uint8(p) if i % 2 else encoder.image_transform(p) for i, p in enumerate(pictures)]
    assert torch.equal(model_batch(mixed, encoder), torch.stack([encoder.image_transform(p) for p in pictures]))


def test_a_preprocessing_step_without_a_tensor_version_keeps_decoding_on_the_cpu() -> None:
    from torchvision import transforms

    from clipsearch.encoders import tensor_preprocess

    assert tensor_preprocess.from_compose(transforms.Compose([transforms.Grayscale(), transforms.ToTensor()])) is None
    assert tensor_preprocess.from_compose(lambda im: im) is None
    assert tensor_preprocess.split_compose(transforms.Compose([transforms.Grayscale(), transforms.ToTensor()])) is None
    assert tensor_preprocess.split_compose(lambda im: im) is None


def test_the_gpu_takes_jpegs_only_while_its_backlog_is_short() -> None:
    from indexer.device_decode import DeviceDecoder

    decoder = DeviceDecoder(lambda t: t.float(), "cpu", backlog=3)
    assert [decoder.claim() for _ in range(5)] == [True, True, True, False, False]


def test_with_the_gpu_backlog_full_a_worker_decodes_without_parsing_the_header_for_the_gpu(
        model_spec: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from clipsearch.encoders import load_encoder
    from indexer.decoders import ThreadDecoder
    from indexer.device_decode import DeviceDecoder
    from indexer.engine import Contents
    from indexer.items import Decoded, Task
    from indexer.route import Router

    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    gate = threading.Event()  # the GPU's first JPEG stays in its backlog until the end of the test
    decoder = DeviceDecoder(lambda t: gate.wait(10) and t.float(), "cpu", backlog=1)
    parsed = []
    real = images.gpu_decodable_jpeg
    monkeypatch.setattr(images, "gpu_decodable_jpeg", lambda *a: parsed.append(1) or real(*a))
    threads = ThreadDecoder.for_encoder(encoder, images.DEFAULT_MAX_PIXELS)
    reader = Router(lambda: encoder, Contents(), lambda: threads, lambda: decoder)
    loaded = []
    for i in range(3):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(imagegen.jpeg_bytes(imagegen.photo(i, (320, 240))))
        loaded.append(reader.route_and_decode([Task.for_path(str(path))]))
    assert [len(items) for items in loaded] == [0, 1, 1]  # the first went to the GPU and fills its backlog...
    assert all(isinstance(items[0], Decoded) for items in loaded[1:])  # ...the others: the CPU, at once
    assert len(parsed) == 1
    gate.set()
    assert [type(item) for item in decoder.finish()] == [Decoded]


def test_a_jpeg_the_gpu_claims_reaches_it_before_the_rest_of_its_chunk_is_decoded(model_spec: str,
                                                                                   tmp_path: Path) -> None:
    """A reader thread hands a JPEG to the GPU decoder as soon as it claims it: held until the files after it in
    the chunk were decoded on the CPU, the GPU would sit idle meanwhile."""
    from clipsearch.encoders import load_encoder
    from indexer.decoders import ThreadDecoder
    from indexer.device_decode import DeviceDecoder
    from indexer.engine import Contents
    from indexer.items import Decoded, Task
    from indexer.route import Router

    encoder = load_encoder(model_spec, device="cpu", precision="fp32")
    decoder = DeviceDecoder(lambda t: t.float(), "cpu")
    (tmp_path / "a.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(1, (320, 240))))
    imagegen.photo(2).save(tmp_path / "b.png")  # not a JPEG: the CPU decodes it
    tasks = [Task.for_path(str(p)) for p in sorted(tmp_path.iterdir())]
    gpu_done_first = []

    class AfterTheGpu(ThreadDecoder):
        def decode_many(self, reads):  # noqa: ANN001, ANN202
            gpu_done_first.append(bool(wait_for(lambda: decoder.decoded, 10, "the GPU decoding its JPEG")))
            return super().decode_many(reads)

    after_the_gpu = AfterTheGpu.for_encoder(encoder, images.DEFAULT_MAX_PIXELS)
    reader = Router(lambda: encoder, Contents(), lambda: after_the_gpu, lambda: decoder)
    loaded = reader.route_and_decode(tasks)
    assert [(type(item), item.task.path) for item in loaded] == [(Decoded, str(tmp_path / "b.png"))]
    assert gpu_done_first == [True]
    assert [item.task.path for item in decoder.finish()] == [str(tmp_path / "a.jpg")]


def test_unknown_decode_mode_is_a_user_error() -> None:
    from indexer.options import Options

    with pytest.raises(UserError, match="--decode"):
        Options(decode="nvdec")


def test_decode_gpu_without_a_gpu_says_why(cli: Cli, photos: imagegen.PhotoFolder, model_spec: str) -> None:
    result = cli("index", photos.root, "--model", model_spec, "--device", "cpu", "--decode", "gpu")
    assert result.exit_code == 2
    assert result.stderr.strip() == "clipsearch: error: --decode gpu: the model runs on the CPU"
    assert "Traceback" not in result.stderr


def _folder(root: Path) -> dict[str, bytes]:
    """Baseline JPEGs (one per EXIF orientation, one greyscale), a progressive one, a PNG and two broken files."""
    root.mkdir(parents=True)
    files: dict[str, bytes] = {}
    for o in range(1, 9):
        files[f"orient-{o}.jpg"] = imagegen.with_orientation(imagegen.photo(10 + o, (400, 300)), o)
    files["grey.jpg"] = jpeg(imagegen.photo(30, (320, 240)).convert("L"))
    files["big.jpg"] = jpeg(imagegen.photo(31, (2400, 1800)))
    files["progressive.jpg"] = jpeg(imagegen.photo(32, (400, 300)), progressive=True)
    png = io.BytesIO()
    imagegen.photo(33).save(png, "PNG")
    files["plain.png"] = png.getvalue()
    good = jpeg(imagegen.photo(34, (400, 300)))
    files["truncated.jpg"] = good[: len(good) // 3]  # a valid header, but no end marker: kept on the CPU
    files["garbage.jpg"] = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def _index(root: Path, index: Path, spec: str, device: str, decode: str):  # noqa: ANN202
    from clipsearch.encoders import load_encoder
    from clipsearch.store import StoreReader
    from indexer.options import Options

    encoder = load_encoder(spec, device=device, precision="fp32")
    report, vectors = index_folder(root, index, encoder, Options(decode=decode, batch_size=4, workers=2))
    with StoreReader.open(index) as store:
        rows = [store.catalog.file_row(str(root / name)) for name in vectors]
    return report, vectors, {Path(row.path).name: (row.width, row.height) for row in rows if row is not None}


def test_gpu_decoder_scheduling_and_fallback_on_the_cpu(tmp_path: Path, model_spec: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole DeviceDecoder path (claims, its thread, a failing batch split up, refused files decoded again
    on the CPU, orientation, sizes) with libjpeg in nvJPEG's place: the same vectors as the CPU path."""
    from indexer import device_decode

    made: list[device_decode.DeviceDecoder] = []

    def on_cpu(encoder, mode="auto"):  # noqa: ANN001, ANN202
        preprocess = encoder.device_transform
        assert preprocess is not None

        def refusing_big(t: torch.Tensor) -> torch.Tensor:  # the device fails on big.jpg: the CPU must do it
            if tuple(t.shape[-2:]) == (1800, 2400):
                raise RuntimeError("CUDA out of memory (simulated)")
            return preprocess(t)

        made.append(device_decode.DeviceDecoder(refusing_big, "cpu", backlog=len(files)))
        return made[-1]

    root = tmp_path / "photos"
    files = _folder(root)
    cpu_report, cpu_vectors, cpu_sizes = _index(root, tmp_path / "cpu", model_spec, "cpu", "cpu")
    monkeypatch.setattr(device_decode.DeviceDecoder, "for_encoder", staticmethod(on_cpu))
    report, vectors, sizes = _index(root, tmp_path / "dev", model_spec, "cpu", "auto")

    assert len(made) == 1
    assert sorted(f["path"].rsplit("/", 1)[1] for f in report.failed) == ["garbage.jpg", "truncated.jpg"]
    assert sorted(f["path"] for f in report.failed) == sorted(f["path"] for f in cpu_report.failed)
    assert report.added == cpu_report.added == len(files) - 2
    # 8 orientations and greyscale; big.jpg refused there and decoded on the CPU; not progressive.jpg, plain.png,
    # truncated.jpg (no end marker) or garbage.jpg
    assert (made[0].decoded, made[0].rejected) == (9, 1)
    assert report.gpu_decoded == made[0].decoded
    assert sizes == cpu_sizes
    for name, vector in vectors.items():
        assert cosine(vector, cpu_vectors[name]) >= 0.99, name


@needs_cuda
def test_nvjpeg_embeds_like_the_cpu_path(tmp_path: Path, model_spec: str) -> None:
    root = tmp_path / "photos"
    files = _folder(root)
    cpu_report, cpu_vectors, cpu_sizes = _index(root, tmp_path / "cpu", model_spec, "cuda", "cpu")
    report, vectors, sizes = _index(root, tmp_path / "gpu", model_spec, "cuda", "gpu")
    assert report.gpu_decoded == 10  # 8 orientations, greyscale, big
    assert sorted(f["path"] for f in report.failed) == sorted(f["path"] for f in cpu_report.failed)
    assert report.added == cpu_report.added == len(files) - 2
    assert sizes == cpu_sizes
    for name, vector in vectors.items():
        assert cosine(vector, cpu_vectors[name]) >= 0.99, name


@needs_cuda
def test_nvjpeg_photos_embed_like_a_cpu_decode_at_camera_sizes(model_spec: str) -> None:
    """12 MP and 2 MP photo-like JPEGs through nvJPEG + tensor preprocessing vs Pillow draft + PIL preprocessing."""
    from clipsearch.encoders import load_encoder
    from indexer.device_decode import decode_jpegs

    encoder = load_encoder(model_spec, device="cuda", precision="fp32")
    assert encoder.device_transform is not None
    datas = [imagegen.jpeg_bytes(imagegen.photo(40 + i, size))
             for i, size in enumerate([(4000, 3000), (3000, 4000), (1600, 1200), (800, 600)])]
    on_gpu = torch.stack([encoder.device_transform(t) for t in decode_jpegs(datas, torch.device("cuda"))])
    on_cpu = torch.stack([encoder.image_transform(images.decode(d, encoder.image_size).image) for d in datas])
    for a, b in zip(encoder.encode_images(on_gpu), encoder.encode_images(on_cpu)):
        assert cosine(a, b) >= 0.99
