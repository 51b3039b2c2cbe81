"""Timing a whole process, for the benchmarks that compare tools as users run them."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None) -> tuple[float, float, str]:
    """Run a command to its end; (wall seconds, peak RSS in MB, stdout + stderr).

    The RSS comes from wait4 and so also counts pages the child shared with this process between
    fork and exec: when this process is large, have the child report its own peak instead.
    """
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} failed:\n{output[-3000:]}")
    return wall, usage.ru_maxrss / 1024, output
