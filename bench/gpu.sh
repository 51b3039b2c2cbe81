#!/usr/bin/env bash
# The CUDA tests and the GPU benches for a lent GPU machine, in under 10 minutes; the figures on stdout for
# docs/benchmarks.md. The machine has no network: packages it lacks travel as wheels in .whl (see the device
# tool's notes), installed here into /tmp/site. Usage, from the repository root: bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1 CLIPSEARCH_TEXT_EXPORT=0
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
cores=$(nproc)

echo "== CUDA tests (each skips without CUDA)"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_device_decode.py
echo "== bench/pipeline_ceiling.py: the indexing process's own ms per photo, $cores decode workers"
timeout 120 $PY bench/pipeline_ceiling.py --workers "$cores" --chunks 8 --repeat 1
echo "== bench/index_speed.py: ViT-L-14 (random weights), where the model and not decoding should set the pace"
timeout 240 $PY bench/index_speed.py --sizes 400,1200 --model ViT-L-14:none --no-rclip --no-naive --reindex-files 0 \
    --decode-cpu-too
# The Ray engine with GPU actors, where Ray is installed on the machine (its wheels are larger than what travels
# with a run: without it this part says so and is skipped)
if $PY -c "import ray.data" 2>/dev/null; then
    echo "== bench/ray_engine.py: the Ray engine with a GPU actor against the local engine, ViT-L-14"
    timeout 150 $PY bench/ray_engine.py --sizes 200,600 --model ViT-L-14:none --gpus-per-replica 1 --commits 50000
else
    echo "== bench/ray_engine.py: skipped (no Ray on this machine: pip install 'clipsearch[ray]')"
fi
# The large index's training (two-level k-means) and assignment on the GPU, where faiss is a GPU build
if $PY -c "import faiss, sys; sys.exit(0 if getattr(faiss, 'get_num_gpus', lambda: 0)() > 0 else 1)" 2>/dev/null; then
    echo "== bench/store_scale.py: the large index trained and built with faiss-gpu, 500,000 vectors"
    timeout 150 $PY bench/store_scale.py --n 500000 --queries 200 --index-type IVF4096_HNSW32,PQ64
else
    echo "== bench/store_scale.py on the GPU: skipped (faiss here is the CPU build)"
fi
