"""People: groups of faces (``clipsearch.store.faces``), with the names and corrections a user gives them.

A run only ever places faces that belong to nobody yet (``indexer.faces``, ``clipsearch.faces.grouping``):
it never moves a face, renames, merges or splits a person. So what the user decides here is never undone
by a later run. A face taken out of a person (``split``, ``remove``) is recorded in ``not_person`` and
never joins that person again; one the user says is no face at all (``remove(..., not_a_face=True)``: a badge,
a pattern dlib took for one) is also recorded against ``NO_ONE``, and no run groups it again. A person is named
by a name (any case) or by its id: ids are never handed out again (AUTOINCREMENT), so a saved ``--person 7``
never finds someone else. A person left with no face (their photos forgotten) goes, with their name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clipsearch.errors import NoSuchPerson, UserError

MAX_NAME = 100
SAME_FACE = 0.2  # descriptors this close are one face found again (``clipsearch.store.faces`` says why)
NO_ONE = 0  # ``not_person``'s person for a face that is no one, ever: ids start at 1 (AUTOINCREMENT), so no one has it


def begin(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The writer's connection in a transaction (the writer's next ``commit`` closes it)."""
    if not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    return conn


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    faces: int
    photos: int  # indexed files that show them (copies count)
    face: int  # the representative face (the largest), and a photo that shows it
    photo: int
    path: str
    box: tuple[int, int, int, int]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["box"] = list(self.box)
        return out


def _check_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise UserError("a person's name cannot be empty")
    if len(name) > MAX_NAME:
        raise UserError(f"a person's name is at most {MAX_NAME} characters")
    if name.isdigit():
        raise UserError(f"a person's name cannot be a number ({name} would read as a person's id)")
    return name


class PeopleTable:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def available(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'people'").fetchone() \
            is not None

    def listing(self) -> list[Person]:
        """Every person, the most photographed first, each with their largest face and a photo it is in."""
        if not self.available:
            return []
        photos = dict(self._conn.execute("SELECT faces.person, count(DISTINCT files.id) FROM faces JOIN files ON "
                                         "files.hash = faces.hash WHERE faces.person IS NOT NULL GROUP BY faces.person"))
        rows = self._conn.execute(  # SQLite's max() picks the row the bare columns come from: the largest face
            "SELECT people.id, people.name, count(*), faces.id, faces.hash, faces.x, faces.y, faces.w, faces.h, "
            "max(faces.w * faces.h) FROM people JOIN faces ON faces.person = people.id GROUP BY people.id").fetchall()
        out = []
        for person, name, faces, face, digest, x, y, w, h, _ in rows:
            shown = self._conn.execute("SELECT id, path FROM files WHERE hash = ? ORDER BY id LIMIT 1", (digest,)).fetchone()
            if shown is not None:
                out.append(Person(person, name, faces, photos.get(person, 0), face, shown[0], shown[1], (x, y, w, h)))
        return sorted(out, key=lambda p: (-p.photos, p.id))

    def resolve(self, refs: Sequence[str]) -> list[int]:
        """The person each of ``refs`` names: an id, a name (any case), or the words of one name only (obama: Barack
        Obama). One that names nobody, or several people, is a mistake said in one line."""
        return [self._one(" ".join(str(ref).split())) for ref in refs]

    def _one(self, text: str) -> int:
        named = dict(self._conn.execute("SELECT id, name FROM people WHERE name IS NOT NULL")) if self.available else {}
        if text.isdigit():
            if self.available and self._conn.execute("SELECT 1 FROM people WHERE id = ?", (int(text),)).fetchone():
                return int(text)
        else:
            exact = [p for p, n in named.items() if n.casefold() == text.casefold()]
            words = text.casefold().split()
            partial = exact or [p for p, n in named.items() if all(w in n.casefold().split() for w in words)]
            if len(partial) == 1:
                return partial[0]
            if len(partial) > 1:
                raise UserError(f"{text[:MAX_NAME]!r} names several people ({', '.join(sorted(named[p] for p in partial))}"
                                "): give the whole name or the id")
        names = sorted(named.values())
        known = f" (named: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else ""
        unknown = NoSuchPerson if text.isdigit() else UserError  # an id the index does not hold: the server's 404
        raise unknown(f"no person is {'numbered' if text.isdigit() else 'named'} {text[:MAX_NAME]!r}{known}: "
                      "'clipsearch people' lists them")

    def faces_of(self, person: int) -> list[dict[str, Any]]:
        """A person's faces, each with a photo that shows it: what a user picks from to split them."""
        rows = self._conn.execute("SELECT faces.id, faces.x, faces.y, faces.w, faces.h, min(files.id), files.path FROM "
                                  "faces JOIN files ON files.hash = faces.hash WHERE faces.person = ? GROUP BY faces.id "
                                  "ORDER BY faces.id", (person,)).fetchall()
        return [{"face": face, "box": [x, y, w, h], "photo": photo, "path": path} for face, x, y, w, h, photo, path in rows]

    # -- the writer's side: what a run places, and what the user decides ------------------------------------
    def create(self) -> int:
        return int(begin(self._conn).execute("INSERT INTO people (name) VALUES (NULL)").lastrowid or 0)

    def name(self, person: int, name: str) -> str:
        name = _check_name(name)
        other = self._conn.execute("SELECT id FROM people WHERE name = ? COLLATE NOCASE AND id != ?",
                                   (name, person)).fetchone()
        if other is not None:
            raise UserError(f"person {other[0]} is named {name} already: 'clipsearch people merge {other[0]} {person}' "
                            "makes them one")
        begin(self._conn).execute("UPDATE people SET name = ? WHERE id = ?", (name, person))
        return name

    def merge(self, into: int, others: Sequence[int]) -> list[str]:
        """The faces of ``others`` become ``into``'s; ``into`` keeps its name, or takes the one name among the others.
        Returns the names that went (two people named differently made one)."""
        others = [o for o in dict.fromkeys(others) if o != into]
        if not others:
            raise UserError("merge needs two different people")
        names = {p: n for p, n in self._conn.execute(
            f"SELECT id, name FROM people WHERE id IN ({','.join('?' * (len(others) + 1))})", (into, *others))}
        conn = begin(self._conn)
        conn.executemany("UPDATE faces SET person = ? WHERE person = ?", [(into, o) for o in others])
        conn.executemany("UPDATE face_memory SET person = ? WHERE person = ?", [(into, o) for o in others])
        conn.executemany("UPDATE OR IGNORE not_person SET person = ? WHERE person = ?", [(into, o) for o in others])
        conn.executemany("DELETE FROM not_person WHERE person = ?", [(o,) for o in others])
        conn.executemany("DELETE FROM people WHERE id = ?", [(o,) for o in others])
        other_names = [names[o] for o in others if names.get(o)]
        if names.get(into) is None and len(other_names) == 1:
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (other_names[0], into))
            return []
        return [n for n in other_names if n != names.get(into)]

    def _owned(self, person: int, faces: Sequence[int]) -> list[int]:
        faces = list(dict.fromkeys(int(f) for f in faces))
        if not faces:
            raise UserError("name the faces to take out ('clipsearch people show ID' lists a person's faces)")
        owned = {r[0] for r in self._conn.execute(f"SELECT id FROM faces WHERE person = ? AND id IN "
                                                  f"({','.join('?' * len(faces))})", (person, *faces))}
        stray = [f for f in faces if f not in owned]
        if stray:
            raise UserError(f"face {stray[0]} is not one of person {person}'s faces ('clipsearch people show {person}' "
                            "lists them)")
        return faces

    def split(self, person: int, faces: Sequence[int]) -> int:
        """``faces`` leave ``person`` for a new person of their own, and never join ``person`` again."""
        faces = self._owned(person, faces)
        if len(faces) == self._conn.execute("SELECT count(*) FROM faces WHERE person = ?", (person,)).fetchone()[0]:
            raise UserError(f"these are all of person {person}'s faces: split takes some of them out")
        new = self.create()
        self._move(person, faces, new)
        return new

    def remove(self, person: int, faces: Sequence[int], not_a_face: bool = False) -> None:
        """"Not this person": ``faces`` leave ``person`` and never join them again; the next run places them with
        someone else, or with no one. ``not_a_face``: they are no one's, ever (``NO_ONE``): no run groups them again
        (``FaceTable.descriptors`` leaves them out)."""
        owned = self._owned(person, faces)
        self._move(person, owned, None, NO_ONE if not_a_face else person)  # not a face: no one's, not "not theirs"
        if not_a_face:
            begin(self._conn).execute(f"INSERT INTO face_memory SELECT {NO_ONE}, id, descriptor FROM faces WHERE id IN "
                         f"({','.join('?' * len(owned))})", owned)  # followed when the photo changes (its ids do)

    def restore(self, faces: Sequence[int]) -> list[int]:
        """Undo ``remove(..., not_a_face=True)``: ``faces`` (the ids they were marked on, or their ids now, after
        their photo changed) are faces again, no one's until the next run groups them (with the person they were
        taken from, likely: "not a face" refused no one in particular). Returns them."""
        import numpy as np

        conn, out = begin(self._conn), []
        for face in dict.fromkeys(int(f) for f in faces):
            looks = [d for (d,) in conn.execute(f"SELECT descriptor FROM face_memory WHERE person = {NO_ONE} AND face = ? "
                                                f"UNION ALL SELECT descriptor FROM faces WHERE id = ? AND id IN (SELECT "
                                                f"face FROM not_person WHERE person = {NO_ONE})", (face, face))]
            if not looks:
                marked = [str(f) for (f,) in conn.execute(f"SELECT face FROM not_person WHERE person = {NO_ONE} LIMIT 20")]
                raise UserError(f"face {face} is not marked as not a face (marked now: {', '.join(marked) or 'none'})")
            mine = np.stack([np.frombuffer(d, "<f4") for d in looks])
            conn.executemany("DELETE FROM face_memory WHERE rowid = ?", [(r,) for r, d in conn.execute(
                f"SELECT rowid, descriptor FROM face_memory WHERE person = {NO_ONE}").fetchall() if _near(mine, d)])
            conn.executemany(f"DELETE FROM not_person WHERE face = ? AND person = {NO_ONE}", [(f,) for f, d in conn.execute(
                f"SELECT id, descriptor FROM faces WHERE id IN (SELECT face FROM not_person WHERE person = {NO_ONE})"
            ).fetchall() if f == face or _near(mine, d)])
            out.append(face)
        return out

    def _move(self, person: int, faces: list[int], to: int | None, refused: int | None = None) -> None:
        """``faces`` leave ``person`` for ``to``, and never join ``refused`` (``person`` unless said) again."""
        conn = begin(self._conn)
        conn.executemany("UPDATE faces SET person = ? WHERE id = ?", [(to, f) for f in faces])
        conn.executemany("INSERT OR IGNORE INTO not_person VALUES (?, ?)",
                         [(f, person if refused is None else refused) for f in faces])
        conn.execute("DELETE FROM people WHERE id = ? AND id NOT IN (SELECT person FROM faces WHERE person IS NOT NULL)",
                     (person,))


def _near(looks: Any, descriptor: bytes) -> bool:
    """Whether ``descriptor`` is one of the faces ``looks`` (rows of descriptors) found again (``SAME_FACE``)."""
    import numpy as np

    return bool((np.linalg.norm(looks - np.frombuffer(descriptor, "<f4"), axis=1) < SAME_FACE).any())
