"""Faces grouped into people, incrementally: a run places only the faces that belong to nobody yet.

    join     a face joins the known person with the face nearest to it, if that face lies closer than
             ``detect.DISTANCE`` (dlib's 0.6) and the user never took this face out of that person
    cluster  the faces left are grouped among themselves by Chinese whispers over the pairs closer than
             ``DISTANCE`` (``dlib.chinese_whispers``); a group of at least ``MIN_FACES`` becomes a new person,
             a face alone waits for company in a later run

A known person is never moved, split or merged here: what a user named, merged or split stays so
(``clipsearch.store.people``). The pairs are found by matrix products in blocks (BLAS), not by dlib's
all-pairs loop. bench/faces.py compares this with grouping every face again from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clipsearch.faces.detect import DISTANCE, distances

if TYPE_CHECKING:
    import numpy as np

MIN_FACES = 2  # a face seen once is nobody yet: strangers in the background stay out of the people list
_CELLS = 1 << 24  # distances computed at a time: 64 MB of float32, whatever the number of faces


@dataclass
class Placement:
    joined: list[tuple[int, int]] = field(default_factory=list)  # (face, known person)
    groups: list[list[int]] = field(default_factory=list)  # faces that make a new person together


def place(known_faces: np.ndarray, known_people: np.ndarray, known: np.ndarray, new_faces: np.ndarray,
          new: np.ndarray, rejected: Mapping[int, set[int]] | None = None, threshold: float = DISTANCE,
          min_faces: int = MIN_FACES) -> Placement:
    """Where the faces ``new_faces`` (ids; descriptors ``new``) go, given the faces already placed (ids, their
    people, descriptors). ``rejected``: for a face id, the people it must never join."""
    import numpy as np

    rejected = rejected or {}
    out = Placement()
    left: list[int] = []  # rows of ``new`` that joined no one
    rows = _rows(len(known))
    for start in range(0, len(new), rows):
        block = distances(new[start : start + rows], known) if len(known) else np.empty((min(rows, len(new) - start), 0))
        for row, dist in enumerate(block, start=start):
            face = int(new_faces[row])
            person = _nearest_allowed(dist, known_people, rejected.get(face, set()), threshold)
            if person is None:
                left.append(row)
            else:
                out.joined.append((face, person))
    for members in cluster(new[left], threshold):
        if len(members) >= min_faces:
            out.groups.append([int(new_faces[left[m]]) for m in members])
    return out


def _rows(columns: int) -> int:
    return max(1, min(4096, _CELLS // max(1, columns)))


def _nearest_allowed(dist: np.ndarray, people: np.ndarray, refused: set[int], threshold: float) -> int | None:
    import numpy as np

    close = np.flatnonzero(dist < threshold)
    for at in close[np.argsort(dist[close], kind="stable")]:
        if int(people[at]) not in refused:
            return int(people[at])
    return None


def cluster(descriptors: np.ndarray, threshold: float = DISTANCE) -> list[list[int]]:
    """Rows of ``descriptors`` grouped by Chinese whispers over the pairs closer than ``threshold``, largest group
    first (every row in exactly one group)."""
    import numpy as np

    count = len(descriptors)
    if count == 0:
        return []
    edges: list[tuple[int, int]] = [(i, i) for i in range(count)]  # every face a node, even alone
    rows = _rows(count)
    for start in range(0, count, rows):
        block = distances(descriptors[start : start + rows], descriptors)
        rows, cols = np.nonzero(block < threshold)
        rows += start
        keep = rows < cols
        edges.extend(zip(rows[keep].tolist(), cols[keep].tolist()))
    import dlib

    labels = dlib.chinese_whispers(edges)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        groups.setdefault(int(label), []).append(row)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))
