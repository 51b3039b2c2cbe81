"""CUDA paths: fp16 embedding on the GPU and faiss's GPU index. Skipped where there is no GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import imagegen
from tests.conftest import cosine

faiss = pytest.importorskip("faiss")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_faiss_gpu = pytest.mark.skipif(not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0,
                                     reason="needs a GPU build of faiss and a GPU")


@needs_cuda
def test_cuda_fp16_matches_cpu_fp32(model_spec: str) -> None:
    from clipsearch import images
    from clipsearch.encoders import load_encoder

    cpu = load_encoder(model_spec, device="cpu", precision="fp32")
    gpu = load_encoder(model_spec, device="cuda", precision="auto")
    assert gpu.precision == "fp16"
    batch = torch.stack([cpu.image_transform(images.decode(imagegen.jpeg_bytes(imagegen.photo(s))).image)
                         for s in range(8)])
    for a, b in zip(cpu.encode_images(batch), gpu.encode_images(batch)):
        assert cosine(a, b) >= 0.995
    texts = ["a dog", "a red circle"]
    for a, b in zip(cpu.encode_texts(texts), gpu.encode_texts(texts)):
        assert cosine(a, b) >= 0.995


@needs_faiss_gpu
def test_large_searches_run_on_the_gpu_with_the_same_answer(tmp_path) -> None:  # noqa: ANN001
    from clipsearch.store import vector_index
    from search.engine import GPU_MIN_VECTORS

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(GPU_MIN_VECTORS + 1000, 64)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cpu = faiss.IndexIDMap2(faiss.IndexFlatIP(64))
    cpu.add_with_ids(vectors, np.arange(len(vectors), dtype="int64") + 1)
    gpu = vector_index.on_gpus(cpu)
    assert gpu is not None
    query = vectors[:5] + 0.01
    d1, i1 = cpu.search(query, 10)
    d2, i2 = gpu.search(query, 10)
    assert (i1 == i2).mean() > 0.99
    assert np.allclose(d1, d2, atol=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more GPUs")
def test_all_visible_gpus_share_the_batches(model_spec: str) -> None:
    from clipsearch.encoders import load_encoder

    one = load_encoder(model_spec, device="cuda:0", precision="fp32")
    every = load_encoder(model_spec, device="cuda", precision="fp32")
    assert one.gpus == 1 and every.gpus == torch.cuda.device_count()
    assert every.batch_size == 128 * every.gpus
    batch = torch.randn(2 * every.gpus + 1, 3, one.image_size, one.image_size)
    for a, b in zip(one.encode_images(batch), every.encode_images(batch)):
        assert cosine(a, b) >= 0.999


@needs_cuda
def test_a_batch_queued_on_the_gpu_gives_its_vectors_once_done(model_spec: str) -> None:
    """``start_images`` returns while the GPU may still compute (the run stores the previous batch meanwhile);
    ``result()`` waits for the copy back and gives what ``encode_images`` gives."""
    from clipsearch import images
    from clipsearch.encoders import load_encoder

    gpu = load_encoder(model_spec, device="cuda", precision="fp32")
    batch = torch.stack([gpu.image_transform(images.decode(imagegen.jpeg_bytes(imagegen.photo(s))).image)
                         for s in range(8)])
    pending = gpu.start_images(batch)
    vectors = pending.result()
    assert pending.ready()
    np.testing.assert_allclose(vectors, gpu.encode_images(batch), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@needs_faiss_gpu
def test_the_large_index_trains_and_adds_on_the_gpu_and_recalls_as_on_the_cpu(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Two-level k-means and the assignment of each added vector run on the GPU (issue 24); the answers are as
    good as the CPU's."""
    from clipsearch.store import large_index
    from tests.test_large_index import clustered, fill, top

    data = clustered(12_000, seed=1)
    queries = clustered(100, seed=2)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    recalls = []
    for gpus in (large_index.gpus(), 0):
        monkeypatch.setattr(large_index, "gpus", lambda n=gpus: n)
        index = tmp_path / f"idx{gpus}"
        fill(index, data)
        found = top(index, queries)
        recalls.append(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, exact)]))
    assert recalls[0] >= recalls[1] - 0.02 and recalls[0] >= 0.9, recalls
