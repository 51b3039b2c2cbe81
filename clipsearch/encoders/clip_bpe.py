"""CLIP's byte-level BPE tokenizer without torch, its tables read from SQLite on demand (for ``onnx_text``)."""

from __future__ import annotations

import html
import sqlite3
from pathlib import Path
from typing import Any

# open_clip's pre-tokenizer, as in SimpleTokenizer. The stdlib spelling covers every text whose digits are
# plain decimal digits; for the rest ("²", "½", "Ⅻ": numeric but not decimal) the `regex` module runs the original.
_WORDS_RE = r"""'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+"""
_WORDS_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which the CLIP vocabulary is written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


class ClipBpe:
    """CLIP's byte-level BPE, as open_clip's SimpleTokenizer does it, reading its tables from SQLite on demand.

    Loading CLIP's 49k-token vocabulary and 49k merges costs a large share of a cold search however it is
    stored (the `tokenizers` library too; bench/startup.py); a query has a handful of words, so only their pieces are looked up.
    ``export`` checks it against open_clip's own tokenizer on the probe texts before an export is kept.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        self.sot, self.eot, self.context_length = meta["sot"], meta["eot"], meta["context_length"]
        self._bytes = _bytes_to_unicode()
        self._cache: dict[str, list[str]] = {}

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def write(path: Path, tables: dict[str, Any]) -> None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("CREATE TABLE vocab (token TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID")
            db.execute("CREATE TABLE ranks (pair TEXT PRIMARY KEY, rank INTEGER NOT NULL) WITHOUT ROWID")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, tables[k]) for k in ("sot", "eot", "context_length")])
            db.executemany("INSERT INTO vocab VALUES (?, ?)", tables["vocab"].items())
            db.executemany("INSERT INTO ranks VALUES (?, ?)", tables["ranks"].items())
        db.close()

    def _ranks(self, pairs: list[str]) -> dict[str, int]:
        """Merge rank of each of ``pairs`` ("a b") that is a merge at all."""
        marks = ",".join("?" * len(pairs))
        return dict(self._db.execute(f"SELECT pair, rank FROM ranks WHERE pair IN ({marks})", pairs))  # noqa: S608

    def _ids(self, pieces: list[str]) -> dict[str, int]:
        marks = ",".join("?" * len(pieces))
        return dict(self._db.execute(f"SELECT token, id FROM vocab WHERE token IN ({marks})", pieces))  # noqa: S608

    @staticmethod
    def clean(text: str) -> str:
        """open_clip's 'lower' cleaning: ftfy (only needed past ASCII), HTML entities, whitespace, lower case."""
        if not text.isascii():
            import ftfy

            text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        return " ".join(text.split()).lower()

    @staticmethod
    def words(text: str) -> list[str]:
        if any(ch.isnumeric() and not ch.isdecimal() for ch in text):
            import regex

            return regex.findall(_WORDS_REGEX, text, regex.IGNORECASE)
        import re

        return re.findall(_WORDS_RE, text)

    def _bpe(self, token: str) -> list[str]:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [f"{a} {b}" for a, b in zip(word, word[1:])]
            ranks = self._ranks(sorted(set(pairs)))
            if not ranks:
                break
            first, second = min(ranks, key=ranks.__getitem__).split(" ")
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        """[start] + BPE ids + [end], truncated to the context length with the end token kept last."""
        pieces = []
        for word in self.words(self.clean(text)):
            pieces.extend(self._bpe("".join(self._bytes[b] for b in word.encode("utf-8"))))
        vocab = self._ids(sorted(set(pieces))) if pieces else {}
        ids = [self.sot, *(vocab[piece] for piece in pieces), self.eot]
        if len(ids) > self.context_length:
            ids = ids[: self.context_length]
            ids[-1] = self.eot
        return ids
