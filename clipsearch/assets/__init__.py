"""The files that ship inside the package, and the one place that finds them.

    clipsearch-demo.safetensors   the demo model's weights (trained by data/demo_model/train.py)
    vocabulary.txt                the built-in tag vocabulary (one label per line)
    model_configs/                open_clip configs of the architectures shipped here (the demo model)
    tower_gflops.json             every open_clip image tower's cost (bench/tower_flops.py)

They are found through ``importlib.resources``, never through the source checkout's layout, so that a wheel
installed anywhere (pipx, uv tool, a venv) finds them as an editable install does. pyproject.toml's
package-data ships every file here; tests/test_wheel.py checks that the built wheel holds them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

NAMES = ("clipsearch-demo.safetensors", "vocabulary.txt", "model_configs", "tower_gflops.json")


def path(name: str) -> Path:
    """A shipped file (or folder) as a real path: the demo weights and the model configs are opened by libraries
    that take paths, not streams. Installs from a wheel are unpacked on disk, so the resource is a path."""
    found = resources.files(__name__).joinpath(name)
    if not isinstance(found, Path):  # a zipped install (zipimport): no library could open it by name
        raise RuntimeError(f"clipsearch must be installed unpacked: {name} is inside an archive ({found})")
    return found
