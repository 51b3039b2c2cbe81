"""Train the demo model: a small open_clip CLIP on rendered coloured shapes, on the CPU, from a fixed seed.

    python data/demo_model/train.py                       # the shipped weights (about 17 minutes on 2 CPU cores)
    python data/demo_model/train.py --steps 5 --out /tmp/x.safetensors   # a smoke run

The architecture is ``clipsearch-demo`` (clipsearch/model_configs), the text
side uses the standard CLIP tokenizer, and the objective is open_clip's own
``ClipLoss``. Every batch holds each of the 54 colour x shape classes exactly
once, so the contrastive loss has no false negatives. Weights are written as
fp16 safetensors (under 20 MB) and load with ``--model demo``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

import shapes  # noqa: E402
import torch  # noqa: E402

ARCH = "clipsearch-demo"
TRAIN_SEED = 2026
EVAL_SEED = 7


def build(seed: int, arch: str = ARCH):  # noqa: ANN201 - open_clip types
    import open_clip

    from clipsearch.encoders.openclip import register_model_configs

    register_model_configs()
    if os.environ.get("EXTRA_MODEL_CONFIGS"):
        open_clip.add_model_config(os.environ["EXTRA_MODEL_CONFIGS"])
    torch.manual_seed(seed)
    model, preprocess_train, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(arch)


def prefetch(seed: int, preprocess, tokenizer, depth: int = 4):  # noqa: ANN001, ANN201
    """Render batches in a background thread (Pillow releases the GIL) while the model trains."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def work() -> None:
        for batch in shapes.batches(seed):
            images = torch.stack([preprocess(im) for im, _, _ in batch])
            texts = tokenizer([cap for _, cap, _ in batch])
            q.put((images, texts))

    threading.Thread(target=work, daemon=True).start()
    while True:
        yield q.get()


@torch.no_grad()
def evaluate(model, preprocess, tokenizer, seed: int = EVAL_SEED, per_class: int = 3) -> dict[str, float]:  # noqa: ANN001
    """Held-out precision@per_class for every "a {colour} {shape}" query and zero-shot accuracy."""
    model.eval()
    rows = list(shapes.held_out(seed, per_class))
    images = torch.stack([preprocess(im) for *_, im in rows])
    labels = torch.tensor([shapes.CLASSES.index((c, s)) for c, s, _, _ in rows])
    img = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
    txt = torch.nn.functional.normalize(model.encode_text(tokenizer([f"a {c} {s}" for c, s in shapes.CLASSES])), dim=-1)
    sims = txt @ img.T  # classes x images
    top = sims.topk(per_class, dim=1).indices
    precision = (labels[top] == torch.arange(len(shapes.CLASSES))[:, None]).float().mean().item()
    accuracy = ((img @ txt.T).argmax(dim=1) == labels).float().mean().item()
    model.train()
    return {"precision_at_3": precision, "zero_shot_accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--eval-every", type=int, default=600)
    parser.add_argument("--arch", default=ARCH)
    parser.add_argument("--out", type=Path, default=HERE / "clipsearch-demo.safetensors")
    args = parser.parse_args()

    from open_clip.loss import ClipLoss
    from safetensors.torch import save_file

    torch.set_num_threads(os.cpu_count() or 2)
    model, preprocess, tokenizer = build(args.seed, args.arch)
    model.train()
    loss_fn = ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return 0.5 * args.lr * (1 + math.cos(math.pi * (step - args.warmup) / max(1, args.steps - args.warmup)))

    started = time.time()
    data = prefetch(args.seed, preprocess, tokenizer)
    for step in range(args.steps):
        images, texts = next(data)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        img, txt, scale = model(images, texts)  # fp32: on these CPUs bf16 autocast trains slower
        loss = loss_fn(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  "
                  f"{time.time() - started:6.0f}s", flush=True)
        if args.eval_every and step and step % args.eval_every == 0:
            print("  held-out:", evaluate(model, preprocess, tokenizer), flush=True)

    seconds = time.time() - started
    result = evaluate(model, preprocess, tokenizer)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata={"arch": args.arch, "seed": str(args.seed), "steps": str(args.steps)})
    report = {"steps": args.steps, "seconds": round(seconds), "bytes": args.out.stat().st_size, **result}
    print(json.dumps(report))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
