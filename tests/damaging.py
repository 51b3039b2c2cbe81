"""Damage injected into an index's catalog, as a bad sector or a stray write would leave it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path


def change_a_byte_in_a_stored_path(catalog: Path, photo: Path, where: str) -> None:
    """The first letter of ``photo``'s name made upper case in the catalog file: in its row's copy of the path
    (``where="row"``) or in the paths' index's copy (``"index"``). Which of the two copies comes first in the file
    varies, so each is tried on a scratch copy and told by what the row then reads."""
    data = catalog.read_bytes()
    full = str(photo).encode()
    spots = [m.start() + len(full) - len(photo.name) for m in re.finditer(re.escape(full), data)]
    assert len(spots) >= 2, spots
    damaged = full[: -len(photo.name)] + photo.name[:1].upper().encode() + photo.name[1:].encode()
    scratch = catalog.with_name("scratch.sqlite")
    for at in spots:
        changed = bytearray(data)
        changed[at] = damaged[len(full) - len(photo.name)]
        scratch.write_bytes(bytes(changed))
        conn = sqlite3.connect(scratch)
        try:
            in_row = conn.execute("SELECT count(*) FROM files NOT INDEXED WHERE path = CAST(? AS TEXT)",
                                  (damaged,)).fetchone()[0] == 1
        finally:
            conn.close()
            scratch.unlink()
        if in_row == (where == "row"):
            catalog.write_bytes(bytes(changed))
            return
    raise AssertionError(f"no copy of {photo} in the {where}")


def index_the_sample(base: Path) -> Path:
    """The sample copied to ``base/photos`` and indexed once with the demo model into ``base/index`` (in-process): what
    a module's damage tests copy, each its own."""
    import shutil

    from typer.testing import CliRunner

    from cli import app
    from tests.serving import SAMPLE

    shutil.copytree(SAMPLE, base / "photos")
    result = CliRunner().invoke(app, ["index", str(base / "photos"), "--index", str(base / "index"), "--model", "demo",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    return base

