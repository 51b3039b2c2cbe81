"""Whole-process start-up: `import clipsearch`, `clipsearch --help`, `clipsearch search --help` and the Python API's
import, each as a fresh interpreter, median of N runs against a bare `python -c pass` measured in the same run.

    python bench/startup.py [--runs 15] [--before DIR]   # DIR: another checkout (e.g. a git worktree of main)

What it guards: the CLI answers --help at once and `import clipsearch` (the API's entry) stays free of torch, faiss,
numpy and ray (issue 33). Figures: docs/benchmarks.md ("Start-up").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _medians(commands: dict[str, tuple[list[str], Path]], runs: int) -> dict[str, float]:
    """Each command's median wall time over ``runs``, the commands taking turns run by run, so a busy moment of
    the machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (command, root) in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=root)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", type=Path, help="another checkout to time the same way, case by case")
    args = parser.parse_args()
    python = sys.executable
    trees = {"now": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    cases = {
        "python -c pass (baseline)": ["-c", "pass"],
        "import clipsearch": ["-c", "import clipsearch"],
        "import clipsearch; clipsearch.open_index": ["-c", "import clipsearch; getattr(clipsearch, 'open_index', None)"],
        "clipsearch --help": ["cli.py", "--help"],
        "clipsearch search --help": ["cli.py", "search", "--help"],
    }
    baseline = None
    for name, words in cases.items():
        seconds = _medians({tree: ([python, *words], root) for tree, root in trees.items()}, args.runs)
        baseline = baseline or seconds["now"]
        print(f"{name:<45} " + "  ".join(f"{tree} {s * 1000:6.1f} ms ({s / baseline:4.2f}x)" for tree, s in seconds.items()))
    heavy = subprocess.run([python, "-c", "import sys, clipsearch; getattr(clipsearch, 'open_index', None); "
                            "print(sorted(m for m in ('torch', 'faiss', 'numpy', 'ray', 'open_clip') if m in sys.modules))"],
                           capture_output=True, text=True, cwd=ROOT, check=True)
    print(f"heavy modules after `import clipsearch` and the API's entry: {heavy.stdout.strip()}")


if __name__ == "__main__":
    main()
