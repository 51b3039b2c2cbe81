"""The faces tables: each content's faces (box, landmarks, descriptor) and the people they are grouped into.

Faces belong to a content (a hash), like tags: a renamed or copied photo keeps them, and they go with
the last file of that content (``drop_orphans``, run by every writer's ``finish``: ``forget`` and a
run's sweep take a photo's faces with it). ``faced`` lists the contents whose faces were looked for
(none found, maybe, or the detector failed on it: ``error``), so a killed run leaves the rest to the
next. Boxes and landmarks are in the pixels of the upright picture at its full size, whatever size it
was read at. Who the faces are is ``clipsearch.store.people``'s. Format 12 on; readers of older
catalogs see no faces.

Face ids change when a photo's bytes do (its faces are found again, as new rows), so what the user decided about
a face is also kept by what it looks like (``face_memory``, format 16): a face marked not a face (person ``NO_ONE``)
marks any face found later within ``SAME_FACE`` of it, and a named person whose faces a repair lost (``salvage``)
gets back the first face found within ``SAME_FACE`` of one of theirs, the rest following by grouping.

``meta.faces`` is the stage's setting (``SETTINGS``): on, later (faces kept, none looked for until on
again) or off (none kept). The writes below run on the writer's connection, in the transaction its
next ``commit`` closes; they never touch the vectors (no new generation).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clipsearch.store.migrations import OptionalTable
from clipsearch.store.people import NO_ONE, SAME_FACE, PeopleTable, begin

if TYPE_CHECKING:
    import numpy as np

SETTINGS = ("on", "later", "off")
DESCRIPTOR_SIZE = 128  # dlib's face descriptor (float32)
# The same face found again (the photo re-saved, its metadata edited: the picture as good as unchanged) lies within a
# few hundredths of its old descriptor; two photos of one person lie 0.3-0.6 apart (dlib's threshold: 0.6). So a
# remembered decision follows a face only this close (``SAME_FACE``): the same face, not the same person.
_IN_CHUNK = 500


@dataclass(frozen=True)
class Face:
    """A face found in a picture: its box (x, y, width, height), five landmarks (eyes' corners and the nose's
    base, as (x, y) rows) and its 128-d descriptor, whose distances tell people apart."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    descriptor: np.ndarray


class FaceTable(OptionalTable):
    """The face queries of a catalog connection (a reader's snapshot or the writer's)."""

    TABLE = "faces"

    @property
    def people(self) -> PeopleTable:
        return PeopleTable(self._conn)

    def setting(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'faces'").fetchone()
        return row[0] if row else "off"

    def counts(self) -> dict[str, int]:
        """What ``info`` says: photos looked at, faces found, people, faces not grouped yet."""
        if not self.available:
            return {"faced_photos": 0, "faces": 0, "people": 0}
        queries = {"faced_photos": "SELECT count(*) FROM files WHERE hash IN (SELECT hash FROM faced)",
                   "faces": "SELECT count(*) FROM faces", "people": "SELECT count(*) FROM people"}
        return {key: int(self._conn.execute(sql).fetchone()[0]) for key, sql in queries.items()}

    def not_faces(self) -> int:
        """How many faces the user said are not faces (``people remove --not-a-face``): no one's, ever."""
        if not self.available:
            return 0
        return int(self._conn.execute("SELECT count(*) FROM not_person WHERE person = ?", (NO_ONE,)).fetchone()[0])

    def of_ids(self, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """Each file's faces that belong to a person: ``{"person", "name", "face", "box"}``, left to right (files with none
        are left out). Faces not grouped yet (seen once so far) are not anyone yet."""
        ids = [int(i) for i in ids]
        out: dict[int, list[dict[str, Any]]] = {}
        if not self.available:
            return out
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute("SELECT files.id, faces.id, faces.person, people.name, faces.x, faces.y, faces.w, faces.h "
                                      "FROM files JOIN faces ON faces.hash = files.hash JOIN people ON people.id = "
                                      f"faces.person WHERE files.id IN ({marks}) ORDER BY faces.x", chunk)
            for file_id, face, person, name, x, y, w, h in rows:
                out.setdefault(file_id, []).append({"person": person, "name": name, "face": face, "box": [x, y, w, h]})
        return out

    def box_of(self, face: int) -> tuple[int, tuple[int, int, int, int]] | None:
        """(a file that shows it, box) of a face, for its picture."""
        if not self.available:
            return None
        row = self._conn.execute("SELECT (SELECT min(id) FROM files WHERE files.hash = faces.hash), x, y, w, h "
                                 "FROM faces WHERE id = ?", (face,)).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), (row[1], row[2], row[3], row[4]))

    # -- the writer's side ----------------------------------------------------------------------------------
    def switch(self, setting: str) -> dict[str, Any] | None:
        """The stage's setting; off drops every face, person and name (what the user asked not to keep) and returns
        what went, for the run to say: ``{"faces", "people", "named"}`` (None when there was nothing to drop)."""
        assert setting in SETTINGS, setting
        conn = begin(self._conn)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('faces', ?)", (setting,))
        if setting != "off" or not self.available:
            return None
        dropped = {"faces": int(conn.execute("SELECT count(*) FROM faces").fetchone()[0]),
                   "people": int(conn.execute("SELECT count(*) FROM people").fetchone()[0]),
                   "named": [n for (n,) in conn.execute(
                       "SELECT name FROM people WHERE name IS NOT NULL ORDER BY name COLLATE NOCASE")]}  # ids vary
        for table in ("faces", "faced", "people", "not_person", "face_memory"):
            conn.execute(f"DELETE FROM {table}")
        return dropped if dropped["faces"] or dropped["people"] else None

    def unfaced(self) -> list[tuple[bytes, str, int, int]]:
        """(hash, path, size, mtime_ns) of one file of each photo content whose faces were not looked for yet. Videos
        (``clipsearch.store.moments``) are not looked at: a face's box is in a picture, and a video has many."""
        rows = self._conn.execute("SELECT hash, path, size, mtime_ns FROM files WHERE id IN (SELECT min(id) FROM files "
                                  "WHERE hash NOT IN (SELECT hash FROM faced) AND hash NOT IN (SELECT hash FROM videos) "
                                  "GROUP BY hash)").fetchall()
        return [(bytes(digest), path, size, mtime_ns) for digest, path, size, mtime_ns in rows]

    def put(self, digest: bytes, faces: Sequence[Face], error: str | None = None) -> None:
        """A content's faces (replacing any it had), and the content marked as looked at."""
        import numpy as np

        conn = begin(self._conn)
        conn.execute("DELETE FROM faces WHERE hash = ?", (digest,))
        conn.executemany("INSERT INTO faces (hash, x, y, w, h, landmarks, descriptor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(digest, *face.box, np.asarray(face.landmarks, "<f4").tobytes(),
                           np.asarray(face.descriptor, "<f4").tobytes()) for face in faces])
        conn.execute("INSERT OR REPLACE INTO faced VALUES (?, ?)", (digest, error))
        if faces:
            self._remembered(conn, digest)

    @staticmethod
    def _remembered(conn: sqlite3.Connection, digest: bytes) -> None:
        """What ``face_memory`` says of the faces just found in ``digest``: a face the user said is not a face stays
        no one's; a named person waiting for their faces (after a repair) gets theirs back."""
        import numpy as np

        if conn.execute("SELECT 1 FROM face_memory LIMIT 1").fetchone() is None:
            return
        for face, descriptor in conn.execute("SELECT id, descriptor FROM faces WHERE hash = ?", (digest,)).fetchall():
            memory = conn.execute("SELECT person, descriptor FROM face_memory").fetchall()
            if not memory:
                return
            known = np.frombuffer(b"".join(m[1] for m in memory), "<f4").reshape(len(memory), DESCRIPTOR_SIZE)
            gaps = np.linalg.norm(known - np.frombuffer(descriptor, "<f4"), axis=1)
            if gaps[at := int(gaps.argmin())] >= SAME_FACE:
                continue
            if (person := int(memory[at][0])) == NO_ONE:
                conn.execute("INSERT OR IGNORE INTO not_person VALUES (?, ?)", (face, NO_ONE))
            elif conn.execute("UPDATE faces SET person = ? WHERE id = ? AND person IS NULL", (person, face)).rowcount:
                conn.execute("DELETE FROM face_memory WHERE person = ?", (person,))  # theirs again: grouping does the rest

    def descriptors(self, assigned: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face ids, person ids, descriptors) of the faces that belong to a person, or (``assigned`` False) of
        those that belong to none yet (person ids -1); never those the user said are not faces (``NO_ONE``)."""
        import numpy as np

        where = "person IS NOT NULL" if assigned else \
            f"person IS NULL AND id NOT IN (SELECT face FROM not_person WHERE person = {NO_ONE})"
        rows = self._conn.execute(f"SELECT id, COALESCE(person, -1), descriptor FROM faces WHERE {where} "
                                  "ORDER BY id").fetchall()
        ids = np.array([r[0] for r in rows], dtype="int64")
        people = np.array([r[1] for r in rows], dtype="int64")
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), DESCRIPTOR_SIZE)
        return ids, people, matrix

    def rejected(self) -> dict[int, set[int]]:
        """For each face the user took out of people: the people it never joins again."""
        out: dict[int, set[int]] = {}
        for face, person in self._conn.execute("SELECT face, person FROM not_person"):
            out.setdefault(face, set()).add(person)
        return out

    def assign(self, pairs: Iterable[tuple[int, int]]) -> None:
        """(face, person): a face not grouped yet joins a person (a face already someone's is never moved here)."""
        begin(self._conn).executemany("UPDATE faces SET person = ? WHERE id = ? AND person IS NULL",
                                      [(person, face) for face, person in pairs])

    def drop_orphans(self) -> None:
        """Faces of contents no file has any more, and the people left with no face (their names with them)."""
        if not self.available:
            return
        conn = begin(self._conn)
        conn.execute("DELETE FROM faces WHERE hash NOT IN (SELECT hash FROM files)")
        conn.execute("DELETE FROM faced WHERE hash NOT IN (SELECT hash FROM files)")
        conn.execute("DELETE FROM people WHERE id NOT IN (SELECT person FROM faces WHERE person IS NOT NULL) "
                     "AND id NOT IN (SELECT person FROM face_memory)")  # a name waiting for its faces stays
        conn.execute("DELETE FROM not_person WHERE face NOT IN (SELECT id FROM faces)")


def drop_orphans(conn: sqlite3.Connection) -> None:
    """``FaceTable.drop_orphans`` on the writer's connection (``StoreWriter.finish``)."""
    FaceTable(conn).drop_orphans()
