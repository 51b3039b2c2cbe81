"""Whole-process start-up: `import clipsearch`, `clipsearch --help`, `clipsearch search --help` and the Python API's
import, each as a fresh interpreter, median of N runs against a bare `python -c pass` measured in the same run.

    python bench/startup.py [--runs 15]

What it guards: the CLI answers --help at once and `import clipsearch` (the API's entry) stays free of torch, faiss,
numpy and ray (issue 33). Figures: docs/benchmarks.md ("Start-up").
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    script = shutil.which("clipsearch", path=str(Path(python).parent)) or str(ROOT / "cli.py")
    cases = {
        "python -c pass (baseline)": [python, "-c", "pass"],
        "import clipsearch": [python, "-c", "import clipsearch"],
        "import clipsearch; clipsearch.open_index (API entry)": [
            python, "-c", "import clipsearch; getattr(clipsearch, 'open_index', None)"],
        "clipsearch --help": [python, script, "--help"],
        "clipsearch search --help": [python, script, "search", "--help"],
    }
    baseline = None
    for name, command in cases.items():
        seconds = _median_seconds(command, args.runs)
        baseline = baseline or seconds
        print(f"{name:<55} {seconds * 1000:7.1f} ms  {seconds / baseline:5.2f}x baseline")
    heavy = subprocess.run([python, "-c", "import sys, clipsearch; getattr(clipsearch, 'open_index', None); "
                            "print(sorted(m for m in ('torch', 'faiss', 'numpy', 'ray', 'open_clip') if m in sys.modules))"],
                           capture_output=True, text=True, cwd=ROOT, check=True)
    print(f"heavy modules after `import clipsearch`: {heavy.stdout.strip()}")


if __name__ == "__main__":
    main()
