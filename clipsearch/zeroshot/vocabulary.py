"""Label lists: the built-in vocabulary, a user's file, or labels given on the command line.

A label file is plain UTF-8 text, one label per line; blank lines and lines starting with ``#``
are skipped, surrounding spaces dropped, repeats kept once. The built-in vocabulary
(``clipsearch/assets/vocabulary.txt``) is such a file: copy it, edit it, pass it with ``--vocabulary FILE``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from clipsearch import assets
from clipsearch.errors import UserError

BUILTIN = assets.path("vocabulary.txt")
MAX_LABELS = 100_000


def parse(text: str, where: str, form: str = "one label per line; # starts a comment") -> list[str]:
    labels: dict[str, None] = {}
    for line in text.splitlines():
        label = line.strip()
        if label and not label.startswith("#"):
            labels.setdefault(" ".join(label.split()), None)
    if not labels:
        raise UserError(f"{where} holds no labels ({form})")
    if len(labels) > MAX_LABELS:
        raise UserError(f"{where} holds {len(labels):,} labels; at most {MAX_LABELS:,} are supported")
    return list(labels)


def read_file(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"label file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"not a label file but a folder: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"label file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read label file {path}: {exc.strerror or exc}") from None
    return parse(text, f"label file {path}")


def from_list(text: str) -> list[str]:
    """``--labels "playing music, playing sports"``: labels separated by commas."""
    return parse(text.replace(",", "\n"), "--labels", "labels separated by commas")


def builtin() -> list[str]:
    return read_file(BUILTIN)


def key(labels: list[str], templates: tuple[str, ...]) -> str:
    """What a label set's embeddings depend on, besides the model: its labels and templates, in order."""
    digest = hashlib.sha256("\x00".join(labels).encode() + b"\x01" + "\x00".join(templates).encode())
    return digest.hexdigest()[:24]


def setting(value: str) -> str:
    """``index --vocabulary`` as the index records it: builtin, none, or a label file's absolute path (read now,
    so a mistake is found before any work)."""
    if value in ("builtin", "none"):
        return value
    path = os.path.abspath(os.path.expanduser(value))
    read_file(path)
    return path


def labels_for(recorded: str) -> list[str] | None:
    """The labels a recorded setting names; None for "none" (no tags)."""
    if recorded == "none":
        return None
    return builtin() if recorded == "builtin" else read_file(recorded)


def tag_name(label: str) -> str:
    """How a label is shown and searched as a tag: without a leading article ("a dog" -> "dog")."""
    for article in ("a ", "an ", "the "):
        if label.lower().startswith(article) and len(label) > len(article):
            return label[len(article) :]
    return label
