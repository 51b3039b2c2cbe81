"""People as an application shows and corrects them: the list, a person's faces, and the user's decisions (a name, a
merge, a split, "not this person"), each one commit under the write lock. The rules are ``clipsearch.store.people``'s;
a run never undoes them (``clipsearch.faces.grouping`` only places faces that belong to nobody).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clipsearch.errors import UserError

if TYPE_CHECKING:
    from clipsearch.store import StoreReader, StoreWriter
    from clipsearch.store.people import Person

T = TypeVar("T")


@dataclass(frozen=True)
class People:
    """Everyone found so far, and what the list should say beside them."""

    people: list[Person]
    setting: str  # the faces stage: on, later, off
    faces: int  # faces found in all
    ungrouped: int  # faces seen once so far: nobody yet (not those the user said are no face)

    def as_dict(self) -> dict[str, Any]:
        return {"people": [p.as_dict() for p in self.people], "faces": self.setting, "faces_found": self.faces,
                "faces_ungrouped": self.ungrouped}


def listing(store: StoreReader) -> People:
    table = store.catalog.faces
    people = table.people.listing()
    grouped = sum(p.faces for p in people)
    found = table.counts()["faces"]
    return People(people, table.setting(), found, found - grouped - table.not_faces())


def faces_of(store: StoreReader, person: str) -> tuple[int, list[dict[str, Any]]]:
    (found,) = store.catalog.faces.people.resolve([person])
    return found, store.catalog.faces.people.faces_of(found)


def _decide(directory: Path, action: Callable[[StoreWriter], T]) -> T:
    """One decision of the user's, committed under the write lock."""
    from clipsearch.store import StoreWriter, index_exists

    if not index_exists(directory):
        raise UserError(f"no index at {directory}")
    with StoreWriter.open(directory) as store:
        result = action(store)
        store.commit()
    return result


def name(directory: Path, person: str, new_name: str) -> dict[str, Any]:
    def act(store: StoreWriter) -> dict[str, Any]:
        (found,) = store.catalog.faces.people.resolve([person])
        return {"person": found, "name": store.catalog.faces.people.name(found, new_name)}

    return _decide(directory, act)


def merge(directory: Path, into: str, others: Sequence[str]) -> dict[str, Any]:
    def act(store: StoreWriter) -> dict[str, Any]:
        people = store.catalog.faces.people
        target, *rest = people.resolve([into, *others])
        dropped = people.merge(target, rest)
        return {"person": target, "merged": sorted(set(rest) - {target}), "names_dropped": dropped}

    return _decide(directory, act)


def split(directory: Path, person: str, faces: Sequence[int]) -> dict[str, Any]:
    def act(store: StoreWriter) -> dict[str, Any]:
        (found,) = store.catalog.faces.people.resolve([person])
        return {"person": found, "new_person": store.catalog.faces.people.split(found, faces), "faces": sorted(set(faces))}

    return _decide(directory, act)


def remove(directory: Path, person: str, faces: Sequence[int], not_a_face: bool = False) -> dict[str, Any]:
    def act(store: StoreWriter) -> dict[str, Any]:
        (found,) = store.catalog.faces.people.resolve([person])
        store.catalog.faces.people.remove(found, faces, not_a_face)
        return {"person": found, "removed": sorted(set(faces)), "not_a_face": not_a_face}

    return _decide(directory, act)


def restore(directory: Path, faces: Sequence[int]) -> dict[str, Any]:
    """Undo ``remove(..., not_a_face=True)``: the faces are faces again; the next run groups them."""
    return _decide(directory, lambda store: {"restored": store.catalog.faces.people.restore(faces)})
