"""Model load time from a checkpoint: clipsearch's loader against open_clip's own, in one run.

    python bench/model_load.py [--arch ViT-B-32-256,ViT-L-14] [--repeat 3]

Every run of `clipsearch index` that finds something new loads the model first, so a
nightly run with a few new photos is mostly this. For each architecture, saves
random weights as a checkpoint (what a downloaded pretrained file is to the loader),
then times, in this process after the imports, the median of --repeat loads on the CPU:
  open_clip    open_clip.create_model_and_transforms(arch, pretrained=FILE)
  clipsearch   load_encoder("arch:FILE") (skips the random fills the checkpoint overwrites)
and checks that both give the same weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="ViT-B-32-256,ViT-L-14")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import open_clip
    import torch

    from clipsearch.encoders import load_encoder

    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch.split(","):
            path = Path(tmp) / f"{arch}.pt"
            torch.manual_seed(0)
            torch.save(open_clip.create_model(arch).state_dict(), path)

            def theirs(arch: str = arch, path: Path = path) -> torch.nn.Module:
                return open_clip.create_model_and_transforms(arch, pretrained=str(path), device="cpu")[0]

            def ours(arch: str = arch, path: Path = path) -> torch.nn.Module:
                return load_encoder(f"{arch}:{path}", device="cpu", precision="fp32")._model  # type: ignore[attr-defined]

            times: dict[str, list[float]] = {"open_clip": [], "clipsearch": []}
            models = {}
            for _ in range(args.repeat):
                for name, load in (("open_clip", theirs), ("clipsearch", ours)):
                    started = time.perf_counter()
                    models[name] = load()
                    times[name].append(time.perf_counter() - started)
            a, b = models["open_clip"].state_dict(), models["clipsearch"].state_dict()
            same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            t_theirs, t_ours = statistics.median(times["open_clip"]), statistics.median(times["clipsearch"])
            print(f"{arch:<14} open_clip {t_theirs:5.2f} s, clipsearch {t_ours:5.2f} s: {t_theirs / t_ours:4.2f}x "
                  f"({'same weights' if same else 'WEIGHTS DIFFER'})", flush=True)


if __name__ == "__main__":
    main()
