"""Versions of the catalog's schema and the steps between them: an index on a user's disk is upgraded in place.

The version is ``meta.format_version``. A writer (``index``, ``forget``, ``check``) upgrades an older
catalog when it opens it, in one transaction, before anything else: a failure leaves it as it was. No
step re-embeds anything, and the FAISS file (keyed by file ids and the generation, both kept) stays
valid. Readers read every version from ``FIRST`` on as it is (a
read-only mount cannot be upgraded), so their queries stay within what every version has, or check
``Catalog.format_version``. A catalog newer than this code is refused by readers and writers alike
with one line that says to upgrade clipsearch.

Format 7 moves the vectors out of the catalog into segment files (``clipsearch.store.segments``): the
one step that touches them, copying each stored vector once, as float16.

A new version: append a step to ``STEPS`` (its number is its place), and a test that opens a catalog
of the version before it (tests/test_migrations.py starts from a format-1 index made by the code of
that time).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import UserError

FIRST = 1

# Format 1 exactly as clipsearch wrote it until this module existed: every new catalog starts here and
# takes the steps, so a new index and an upgraded one are the same.
V1_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS vectors (
    hash BLOB PRIMARY KEY,
    embedding BLOB NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seen INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS files_hash ON files(hash)",
    """CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    error TEXT NOT NULL,
    seen INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    roots TEXT NOT NULL,
    report TEXT
)""",
    "INSERT OR IGNORE INTO meta VALUES ('format_version', '1')",
    "INSERT OR IGNORE INTO meta VALUES ('generation', '0')",
)


@dataclass(frozen=True)
class Step:
    what: str  # one line for the user: what the upgrade changes
    apply: Callable[[sqlite3.Connection, Path], None]  # the catalog, in the upgrade's transaction; the index directory


def _ids_never_reused(conn: sqlite3.Connection, _: Path) -> None:
    """``files.id`` becomes AUTOINCREMENT: SQLite otherwise hands the largest id out again once its row is deleted,
    and a saved ``/file/ID`` or ``?like=ID`` would then show another photo. Every row keeps its id (the FAISS file
    is keyed by them)."""
    conn.execute("""CREATE TABLE files_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seen INTEGER NOT NULL
)""")
    conn.execute("INSERT INTO files_v2 (id, path, size, mtime_ns, hash, width, height, seen) "
                 "SELECT id, path, size, mtime_ns, hash, width, height, seen FROM files")
    conn.execute("DROP TABLE files")
    conn.execute("ALTER TABLE files_v2 RENAME TO files")
    conn.execute("CREATE INDEX IF NOT EXISTS files_hash ON files(hash)")


def _root_settings(conn: sqlite3.Connection, _: Path) -> None:
    """Each indexed folder keeps how it is walked (hidden files, excluded sub-folders and patterns) as JSON: a
    scheduled plain `index` follows what `index DIR --include-hidden` or `forget DIR/sub` asked for once. Every
    folder indexed so far keeps the default it was walked with (no hidden files, nothing excluded)."""
    conn.execute("ALTER TABLE roots ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'")


def _tags(conn: sqlite3.Connection, _: Path) -> None:
    """Tags per content (``clipsearch.zeroshot.tagging``), computed from the stored vectors: ``tagged`` lists the
    contents whose tags are current (with none, maybe), so a killed run's untagged vectors are found by the next
    one. Empty here: the next run tags every stored vector, re-embedding nothing."""
    conn.execute("""CREATE TABLE tags (
    hash BLOB NOT NULL,
    tag TEXT NOT NULL,
    probability REAL NOT NULL,
    PRIMARY KEY (hash, tag)
) WITHOUT ROWID""")
    conn.execute("CREATE INDEX tags_by_tag ON tags(tag COLLATE NOCASE)")
    conn.execute("CREATE TABLE tagged (hash BLOB PRIMARY KEY) WITHOUT ROWID")


def _photo_meta(conn: sqlite3.Connection, _: Path) -> None:
    """What each content's header says (``clipsearch.photo_meta``): when, which camera and lens, where. Empty
    here: the next run reads the headers of the photos indexed before (no decode, no model)."""
    conn.execute("""CREATE TABLE photo_meta (
    hash BLOB PRIMARY KEY,
    taken TEXT,
    taken_from TEXT,
    make TEXT,
    model TEXT,
    lens TEXT,
    lat REAL,
    lon REAL
) WITHOUT ROWID""")


def _signatures(conn: sqlite3.Connection, _: Path) -> None:
    """Each content's perceptual signature (``clipsearch.signature``), for telling copies from similar shots
    (``clipsearch duplicates``). Empty here: the next run decodes the photos indexed before (no model) for it."""
    conn.execute("CREATE TABLE signatures (hash BLOB PRIMARY KEY, dct INTEGER NOT NULL, edges BLOB NOT NULL) WITHOUT ROWID")


def _vectors_in_segments(conn: sqlite3.Connection, directory: Path) -> None:
    """The stored vectors move to segment files (memory-mapped by searches, appended by runs): a catalog of a million
    photos sheds 2 GB, and 100M fit one machine's disk. Each vector is copied once, in blocks, as the same float32
    numbers; the rows are fsynced before this transaction commits, and a failed upgrade leaves only files the next
    writer removes. A damaged blob (not ``dim`` float32s) is left behind: ``check`` then names its files, which
    the next run embeds again. ``changed_after_build`` starts empty: the large index it serves is built after."""
    import numpy as np

    from clipsearch.store import index_changes
    from clipsearch.store.layout import Layout
    from clipsearch.store.segments import SCHEMA, SegmentAppender, Segments, record

    conn.execute("ALTER TABLE vectors RENAME TO vectors_before_segments")
    for statement in (*SCHEMA, index_changes.SCHEMA):
        conn.execute(statement)
    row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
    dim = int(row[0]) if row else 0
    if dim:
        appender = SegmentAppender(Segments(Layout(directory).segments), conn, dim)
        cursor = conn.execute("SELECT hash, embedding FROM vectors_before_segments WHERE length(embedding) = ?",
                              (dim * 4,))
        while block := cursor.fetchmany(65536):
            matrix = np.frombuffer(b"".join(r[1] for r in block), dtype="<f4").reshape(len(block), dim)
            placed = appender.add_block(matrix)
            conn.executemany("INSERT INTO vectors (hash, segment, row) VALUES (?, ?, ?)",
                             [(r[0], segment, at) for r, (segment, at) in zip(block, placed)])
            record(conn, appender.flush())
    conn.execute("DROP TABLE vectors_before_segments")


def _signature_grids(conn: sqlite3.Connection, _: Path) -> None:
    """Signatures gain a coarse colour grid (``clipsearch.picture_grid``), which tells an added object or a moved
    camera from a copy. Every signature kept so far keeps its hash and edges; its grid is NULL until the next run
    decodes the photo for it (no model: ``indexer.backfill.SignatureBackfill``)."""
    conn.execute("ALTER TABLE signatures ADD COLUMN grid BLOB")


def _pattern_as_before(pattern: str) -> str:
    """A pattern kept by an index of format 8 or older, where it was matched with ``fnmatch`` against the whole
    path under the root (``*`` crossing folders), as a pattern of ``indexer.walk.EXCLUDE_RULES`` that leaves out the same:
    a pattern without a / that does not start with * (Trash, tr*, and every sub-folder ``forget`` excluded) only
    ever matched at the top, so it is anchored (/Trash); a leading */ matched at any depth below the top and now
    reaches the top as well (**/cache: what the README's */cache meant); the rest (*.tmp.jpg, 2019/private) mean
    what they did. A leading ! becomes a literal one."""
    if pattern.startswith("!"):
        pattern = "\\" + pattern
    if "/" not in pattern and not pattern.startswith("*"):
        return "/" + pattern
    if pattern.startswith("*/"):
        return "*" + pattern
    return pattern


def _gitignore_exclusions(conn: sqlite3.Connection, _: Path) -> None:
    """Exclusion patterns follow a .gitignore's rules (``indexer.walk.EXCLUDE_RULES``: a name matches at any depth,
    a / anchors) instead of ``fnmatch`` on the whole path. Each kept pattern is rewritten to leave out what it did
    (``_pattern_as_before``: Trash, and every sub-folder ``forget`` excluded, become /Trash), so no
    photo comes or goes by the upgrade itself, except the top-level folder a */name pattern was meant to reach."""
    import json

    for path, text in conn.execute("SELECT path, settings FROM roots").fetchall():
        settings = json.loads(text)
        if settings.get("exclude"):
            settings["exclude"] = [_pattern_as_before(p) for p in settings["exclude"]]
            conn.execute("UPDATE roots SET settings = ? WHERE path = ?", (json.dumps(settings), path))


def _checksums(conn: sqlite3.Connection, directory: Path) -> None:
    """Every stored vector gets a checksum (a segment's ``.sum`` sidecar) and every derived index file one
    (``clipsearch.store.file_sums``), computed from the files as they are: damage from here on is found by ``check``
    and never scored. Reads each file once; writes no vector. The catalog itself is unchanged: SQLite's own
    ``integrity_check`` guards it."""
    from clipsearch.store import file_sums
    from clipsearch.store.layout import Layout
    from clipsearch.store.segments import Segments, write_sums

    layout = Layout(directory)
    files = Segments(layout.segments)
    for segment, rows in conn.execute("SELECT id, rows FROM segments").fetchall():
        write_sums(files, int(segment), int(rows))
    for derived in (*layout.faiss_files(), *layout.ivf_files()):
        if derived.is_file() and not derived.name.endswith(file_sums.SUFFIX) and ".tmp" not in derived.name:
            file_sums.write(derived)


def _reembedding_beside(conn: sqlite3.Connection, _: Path) -> None:
    """``index --reindex`` builds the new vectors beside the ones searches use (``vectors_next``, same shape) and
    swaps them in by one commit: searches meanwhile are answered in full by the old model. Empty here."""
    conn.execute("CREATE TABLE IF NOT EXISTS vectors_next (hash BLOB PRIMARY KEY, segment INTEGER NOT NULL, "
                 "row INTEGER NOT NULL) WITHOUT ROWID")


def _words(conn: sqlite3.Connection, _: Path) -> None:
    """The words of photos (``clipsearch.store.words``): text read from the pictures per content, names and carried
    words (XMP, IPTC, EXIF) per file, and an FTS5 table over both. Empty here: the next run reads the headers and
    names of every file, and the pictures' text as ``index --words`` says (no vector is touched). Trigram: a word
    matches inside longer ones (OCR runs words together); accents are folded by the code (``words.fold``), which
    works on SQLite before 3.45 (where trigram has no remove_diacritics)."""
    conn.execute("CREATE TABLE IF NOT EXISTS seen_text (hash BLOB PRIMARY KEY, text TEXT NOT NULL, boxes TEXT NOT NULL, "
                 "how TEXT NOT NULL) WITHOUT ROWID")
    conn.execute("CREATE TABLE IF NOT EXISTS file_words (id INTEGER PRIMARY KEY, hash BLOB NOT NULL, names TEXT NOT NULL, "
                 "carried TEXT NOT NULL)")
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS words_fts USING fts5(names, carried, seen, tokenize='trigram')")


def _content_notes(conn: sqlite3.Connection, _: Path) -> None:
    """A file indexed as far as it decodes (a JPEG cut short) keeps the decoder's note (``clipsearch.store.notes``).
    Empty here: files indexed before keep none."""
    conn.execute("CREATE TABLE IF NOT EXISTS content_notes (hash BLOB PRIMARY KEY, note TEXT NOT NULL) WITHOUT ROWID")


def _videos(conn: sqlite3.Connection, _: Path) -> None:
    """Videos are indexed as moments (``clipsearch.store.moments``): a table of each video content's container
    facts and one of its moments (time, and the hash its vector is stored under). Empty here: no photo changes, and
    the FAISS file, which holds only photos so far, stays valid."""
    conn.execute("CREATE TABLE IF NOT EXISTS videos (hash BLOB PRIMARY KEY, duration REAL NOT NULL, "
                 "codec TEXT NOT NULL, fps REAL, moments INTEGER NOT NULL) WITHOUT ROWID")
    conn.execute("CREATE TABLE IF NOT EXISTS moments (hash BLOB NOT NULL, n INTEGER NOT NULL, t REAL NOT NULL, "
                 "moment BLOB NOT NULL, PRIMARY KEY (hash, n)) WITHOUT ROWID")


def _faces(conn: sqlite3.Connection, _: Path) -> None:
    """Faces per content (``clipsearch.store.faces``): each face's box, landmarks and descriptor; ``faced`` lists the
    contents whose faces were looked for (with none, maybe, or an error), so a killed run's rest is found by the
    next one. People group faces; a user's names, merges and splits are rows here that runs never undo
    (``not_person``: a face the user took out of a person never goes back). Empty here: the faces stage is off
    until ``index --faces on``, and then finds the faces of the photos indexed before (no re-embedding)."""
    conn.execute("""CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL,
    x INTEGER NOT NULL,
    y INTEGER NOT NULL,
    w INTEGER NOT NULL,
    h INTEGER NOT NULL,
    landmarks BLOB NOT NULL,
    descriptor BLOB NOT NULL,
    person INTEGER
)""")
    conn.execute("CREATE INDEX IF NOT EXISTS faces_by_hash ON faces(hash)")
    conn.execute("CREATE INDEX IF NOT EXISTS faces_by_person ON faces(person)")
    conn.execute("CREATE TABLE IF NOT EXISTS faced (hash BLOB PRIMARY KEY, error TEXT) WITHOUT ROWID")
    conn.execute("CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE COLLATE NOCASE)")
    conn.execute("CREATE TABLE IF NOT EXISTS not_person (face INTEGER NOT NULL, person INTEGER NOT NULL, "
                 "PRIMARY KEY (face, person)) WITHOUT ROWID")


def _face_memory(conn: sqlite3.Connection, _: Path) -> None:
    """Faces remembered by descriptor, not id (``clipsearch.store.faces``): not-a-face marks, names awaiting faces."""
    conn.execute("CREATE TABLE IF NOT EXISTS face_memory (person INTEGER NOT NULL, face INTEGER, descriptor BLOB NOT NULL)")
    conn.execute("INSERT INTO face_memory SELECT 0, id, descriptor FROM faces WHERE id IN (SELECT face FROM not_person "
                 "WHERE person = 0)")

STEPS: tuple[Step, ...] = (
    Step("photo ids are never handed out again after a photo leaves the index", _ids_never_reused),  # 1 -> 2
    Step("each indexed folder remembers its settings (hidden files, exclusions)", _root_settings),  # 2 -> 3
    Step("photos get tags from a vocabulary (computed from the stored vectors)", _tags),  # 3 -> 4
    Step("photos keep when they were taken, the camera and the place (read from their headers)", _photo_meta),  # 4 -> 5
    Step("photos keep a perceptual signature, to tell copies from similar shots", _signatures),  # 5 -> 6
    Step("the vectors move out of the catalog into segment files (float16)", _vectors_in_segments),  # 6 -> 7
    Step("signatures gain a colour grid, to tell an added object or a moved camera from a copy", _signature_grids),
    Step("exclusions follow a .gitignore's rules (a name matches at any depth, a / anchors)", _gitignore_exclusions),
    Step("stored vectors and index files carry checksums, so that damage is found and never served", _checksums),
    Step("a re-embedding is built beside the vectors searches use, and swapped in whole", _reembedding_beside),
    Step("a photo indexed as far as it decodes keeps the decoder's note (info --failed lists it)", _content_notes),
    Step("photos keep the words in and around them (text in the picture, keywords, names), searchable", _words),
    Step("videos are indexed as moments: frames with their times, and the container's facts", _videos),
    Step("photos may keep the faces found in them, grouped into people you can name (index --faces on)", _faces),
    Step("a face marked not a face stays so when its photo changes; names outlive a repair that lost faces", _face_memory),
)
SUMS_FROM = 10  # the first format whose segments and derived files carry checksums
CURRENT = FIRST + len(STEPS)


class OptionalTable:
    """The reads of a table that catalogs of older formats lack (readers read every format as it is)."""

    TABLE = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def available(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (self.TABLE,)).fetchone() is not None


def version_of(conn: sqlite3.Connection) -> int | None:
    """The catalog's format version; None for a database with no catalog in it yet."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    return int(row[0]) if row else None


def refuse_newer(version: int, where: object) -> None:
    if version > CURRENT:
        raise UserError(f"the index at {where} was written by a newer clipsearch (format {version}; this one reads "
                        f"formats {FIRST} to {CURRENT}): upgrade clipsearch to use it")


def create_or_upgrade(conn: sqlite3.Connection, directory: Path) -> int | None:
    """Bring the catalog on ``conn`` (autocommit mode, the writer's lock held) to ``CURRENT``: create it if it is
    new, else take the steps it lacks, all in one transaction. Returns the version it had (None: it was new)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = version_of(conn)
        if found is None:
            for statement in V1_SCHEMA:
                conn.execute(statement)
        version = FIRST if found is None else found
        refuse_newer(version, directory)
        for number in range(version, CURRENT):
            STEPS[number - FIRST].apply(conn, directory)
        if version != CURRENT:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(CURRENT),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
