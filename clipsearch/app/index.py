"""``Index``: one index on disk as an application uses it. The CLI, the server and the Python API all go through
it, so each rule of the application (what a question may be, how copies are grouped, how a check repairs) is
written once, here or in the module it names.

Opening is cheap: the store is opened by the first call that reads it, and the model by the first call that
embeds (a text query runs on the exported text tower when there is one: no torch). One ``Index`` is one SQLite
connection and one model: use it from one thread at a time (the server takes turns with a lock).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from clipsearch.app import checking, people, questions
from clipsearch.app.results import CheckResult, DuplicateGroup, Duplicates, Failure, Info, TagCount
from clipsearch.errors import NoSuchPhoto, UserError
from clipsearch.indexed_file import open_indexed, read_indexed
from clipsearch.location import resolve_index_dir

if TYPE_CHECKING:
    import numpy as np

    from clipsearch.app.people import People
    from indexer.job import IndexJob
    from indexer.report import Report
    from search.classify import Classified
    from search.engine import Searcher
    from search.query import Hit, Query, Term

# ``progress(done, found)``: photos done so far, and photos found to do (grows while the walk goes on).
ProgressCallback = Callable[[int, int], None]


class Index:
    """An index directory (default: ``$CLIPSEARCH_INDEX``, else ``$XDG_DATA_HOME/clipsearch``)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, device: str = "auto",
                 precision: str = "auto", resident: bool = False) -> None:
        self.directory = resolve_index_dir(directory)
        self.device = device
        self.precision = precision
        self._resident = resident  # a long-lived process (the server): optimise for many queries
        self._searcher: Searcher | None = None
        self._job: IndexJob | None = None  # kept between update() calls: the model stays loaded
        self._duplicates: tuple[tuple[object, ...], Duplicates] | None = None  # the last answer, per generation

    # -- reading ------------------------------------------------------------------------------------------------
    @property
    def searcher(self) -> Searcher:
        """The open index and, loaded on first use, its model (``search.engine.Searcher``)."""
        if self._searcher is None:
            from search.engine import Searcher

            self._searcher = Searcher(self.directory, device=self.device, precision=self.precision,
                                      resident=self._resident)
        return self._searcher

    def search(self, query: str | Sequence[str | Term] | Term | None = None, *,
               image: str | os.PathLike[str] | bytes | None = None, like: int | str | None = None, k: int = 10,
               offset: int = 0, sort: str = "relevance", relevant: bool = False, min_score: float | None = None,
               within: str | None = None, tags: Sequence[str] = (), after: str | None = None,
               before: str | None = None, camera: str | None = None, types: Sequence[str] = (),
               min_pixels: str | None = None, near: str | None = None, text: str | None = None,
               people: Sequence[str] = ()) -> list[Hit]:
        """The best matches, best first (or by date with ``sort``); see ``question`` for what each argument means."""
        return self.answer(self.question(query, image=image, like=like, k=k, offset=offset, sort=sort,
                                         relevant=relevant, min_score=min_score, within=within, tags=tags,
                                         after=after, before=before, camera=camera, types=types,
                                         min_pixels=min_pixels, near=near, text=text, people=people))

    @staticmethod
    def question(query: str | Sequence[str | Term] | Term | None = None, *,
                 image: str | os.PathLike[str] | bytes | None = None, like: int | str | None = None, k: int = 10,
                 offset: int = 0, sort: str = "relevance", relevant: bool = False, min_score: float | None = None,
                 within: str | None = None, tags: Sequence[str] = (), after: str | None = None,
                 before: str | None = None, camera: str | None = None, types: Sequence[str] = (),
                 min_pixels: str | None = None, near: str | None = None, text: str | None = None,
                 people: Sequence[str] = ()) -> Query:
        """A question, checked whole before any index is opened.

        One of ``query`` (words, or the CLI's arithmetic as a list of tokens), ``image`` (a path or bytes) and
        ``like`` (an indexed photo's id); none with ``sort="date"`` browses. ``relevant`` keeps only the matches
        that stand out; ``min_score`` is a flat cosine cutoff. Filters: ``within`` a folder, every one of
        ``tags``, ``after``/``before`` dates (ISO 8601), ``camera`` (part of make or model), ``types`` (jpg, png,
        ...), ``min_pixels`` (2M, 1920x1080), ``near`` (LAT,LON,RADIUS), every one of ``people`` in the photo (names
        or person ids; with nothing else to look for, their photos are browsed by date). ``text``: only photos whose
        words match (text read in them, keywords, names; "quoted phrases" exactly), ranked by the words when nothing
        else is asked."""
        from search.filters import Filters

        if people and query is None and image is None and like is None and text is None and sort == "relevance":
            sort = "date"  # --person alone: every photo of them
        terms = questions.terms_of(query, image, like, sort=sort, text=text)
        filters = Filters(within, tuple(tags), after, before, camera, tuple(types), min_pixels, near, tuple(people))
        return questions.make_query(terms, filters, k, offset, sort, relevant, min_score, text)

    def answer(self, query: Query) -> list[Hit]:
        return self.searcher.answer(query)

    def why_empty(self, query: Query) -> list[str]:
        """What an empty answer to ``query`` can be told by (an unknown tag, a folder with nothing indexed)."""
        return questions.empty_answer_notes(self.searcher, query)

    def embed(self, term: Term) -> np.ndarray:
        """A term's unit vector, as the index's model embeds it."""
        return self.searcher.embed(term)

    def classify(self, photos: Sequence[str | os.PathLike[str] | int], labels: Sequence[str] | None = None, *,
                 templates: str = "photo", top: int | None = 5, model: str | None = None) -> list[Classified]:
        """Labels ranked for each photo (zero-shot), best first: files and folders, or indexed photos' ids.
        ``labels`` None: the built-in vocabulary of everyday photo concepts. ``templates``: photo, imagenet or none.
        Files the index holds as they are now use their stored vectors; others are decoded and embedded as
        ``update`` does, with the index's model, or ``model`` where there is no index (or another is asked for)."""
        from clipsearch.zeroshot import templates as prompt
        from clipsearch.zeroshot import vocabulary
        from search.classify import ZeroShot, image_files, run_classify

        chosen = vocabulary.builtin() if labels is None else vocabulary.parse("\n".join(labels), "the labels")
        if photos and all(isinstance(p, int) for p in photos):
            zero_shot = ZeroShot(searcher=self.searcher)
            classifier = zero_shot.classifier(chosen, prompt.by_name(templates))
            return zero_shot.classify_ids(list(photos), classifier, top)  # type: ignore[arg-type]
        given = [os.fspath(p) for p in photos]  # type: ignore[arg-type]
        files = list(image_files(given))
        if not files:
            raise UserError(f"no image files in {', '.join(given)}")
        return run_classify(files, chosen, prompt.by_name(templates), top, self.directory, model, self.device,
                            self.precision)

    def thumbnail(self, file_id: int, t: float | None = None) -> bytes:
        """A ~256 px upright JPEG of an indexed photo, kept in the index directory (thumbs/) under the content it was
        made from; of a video, its frame at ``t`` seconds (default: its first moment), under the content and ``t``.
        Only the indexed file is read (``clipsearch.indexed_file``). Raises ``NoSuchPhoto``, ``FileGone``,
        ``FileChanged``, ``clipsearch.images.ImageError`` or ``clipsearch.video.VideoError``."""
        from clipsearch import browser_images, video

        store = self.searcher.store
        row = store.catalog.indexed_file(file_id)
        if row is None:
            raise NoSuchPhoto(f"no photo with id {file_id} in the index")
        os.close(open_indexed(row.path, row.size, row.mtime_ns))  # what lies at the path now is the indexed file,
        # even for a thumbnail made before: a deleted or replaced photo's is not shown from the cache
        if video.is_video(row.path):
            if t is None:
                t = min(store.catalog.moments.times([row.id]).get(row.id, {0: 0.0}).values())
            key = hashlib.sha256(row.hash + f"@{t:.3f}".encode()).digest()[:16]
            cached = store.thumbnails.get(key)
            if cached is None:
                with os.fdopen(open_indexed(row.path, row.size, row.mtime_ns), "rb") as indexed:
                    cached = browser_images.picture_thumbnail(video.frame_at(indexed, t))
                store.thumbnails.put(key, cached)
            return cached
        cached = store.thumbnails.get(row.hash)
        if cached is not None:
            return cached
        jpeg = browser_images.thumbnail(read_indexed(row.path, row.size, row.mtime_ns))  # the indexed file, or an error
        store.thumbnails.put(row.hash, jpeg)  # under the content it was made from
        return jpeg

    def words(self, file_id: int) -> dict[str, Any]:
        """An indexed photo's words: ``text`` read in its picture (None: not read) and ``boxes``, each line with its
        four corners in 0..1 of the picture's width and height; ``carried`` (keywords, captions) and ``names``."""
        store = self.searcher.store
        if store.catalog.indexed_file(file_id) is None:
            raise NoSuchPhoto(f"no photo with id {file_id} in the index")
        return store.catalog.words.of_id(file_id)

    def tags(self) -> list[TagCount]:
        """Every tag the index gave, with its count of photos, most common first."""
        with self._reader() as store:
            return [TagCount(tag, count) for tag, count in store.catalog.tags.counts()]

    # -- people (``clipsearch.app.people``): found by ``update`` with faces="on" ----------------------------------
    def people(self) -> People:
        """Everyone whose face was found more than once, the most photographed first, with their largest face."""
        with self._reader() as store:
            return people.listing(store)

    def person_faces(self, person: str | int) -> tuple[int, list[dict[str, Any]]]:
        """(person id, their faces: face id, box, a photo it is in): what to pick from to split them."""
        with self._reader() as store:
            return people.faces_of(store, str(person))

    def face(self, face_id: int) -> bytes:
        """A ~160 px JPEG of a face, cut from the indexed file that shows it (only that file is read). Raises
        ``NoSuchPhoto``, ``FileGone``, ``FileChanged`` or ``clipsearch.images.ImageError``."""
        from clipsearch.faces import detect

        store = self.searcher.store
        found = store.catalog.faces.box_of(face_id)
        row = store.catalog.indexed_file(found[0]) if found is not None else None
        if found is None or row is None:
            raise NoSuchPhoto(f"no face with id {face_id} in the index")
        return detect.crop(read_indexed(row.path, row.size, row.mtime_ns), found[1])

    def name_person(self, person: str | int, name: str) -> dict[str, Any]:
        """Give a person (a name or an id) a name; kept by every later run."""
        return self._decided(people.name(self.directory, str(person), name))

    def merge_people(self, into: str | int, others: Sequence[str | int]) -> dict[str, Any]:
        """Make ``others`` one with ``into``; kept by every later run."""
        return self._decided(people.merge(self.directory, str(into), [str(o) for o in others]))

    def split_person(self, person: str | int, faces: Sequence[int]) -> dict[str, Any]:
        """``faces`` (ids from ``person_faces``) leave ``person`` for a new person; they never go back."""
        return self._decided(people.split(self.directory, str(person), faces))

    def not_this_person(self, person: str | int, faces: Sequence[int], not_a_face: bool = False) -> dict[str, Any]:
        """``faces`` are not ``person``: they leave and never go back; the next update places them elsewhere.
        ``not_a_face``: they are no face at all (a badge, a pattern): no update groups them again."""
        return self._decided(people.remove(self.directory, str(person), faces, not_a_face))

    def _decided(self, result: dict[str, Any]) -> dict[str, Any]:
        self._drop_searcher()  # the next read sees the decision
        return result

    def duplicates(self, similar: bool = False, within: str | None = None, separate: bool = False) -> Duplicates:
        """Groups of copies (with ``similar``, also groups of similar shots), largest first, each with the suggested
        keeper first. ``within`` narrows what is listed to a folder. Nothing is ever deleted or moved. ``separate``:
        on a connection of its own, so that another thread may use this index meanwhile (the server)."""
        from search import duplicates as dup
        from search.filters import folder_in_index
        from search.keeper import describe, ranking

        with self._reader(separate) as store:
            folder = folder_in_index(within, store.catalog.roots()) if within else None
            key = (store.catalog.generation, similar, folder)
            if self._duplicates is not None and self._duplicates[0] == key:
                return self._duplicates[1]
            collection = dup.Collection.of(store)  # the folder narrows what is listed, never what is judged
            inside = _under(folder) if folder else None
            found_groups = dup.find(collection, similar=similar, rank=ranking(collection, store), within=inside)
            groups = [DuplicateGroup.from_dict(g) for g in describe(found_groups, collection, store, inside)]
            found = Duplicates(groups, unsigned=int((collection.signatures < 0).sum()))
        if self._resident:  # a server asked again before the next run answers from memory
            self._duplicates = (key, found)
        return found

    def info(self) -> Info:
        with self._reader() as store:
            return Info.from_dict(store.info())

    def failures(self) -> list[Failure]:
        """The files that could not be indexed, and why (retried once they change)."""
        with self._reader() as store:
            return [Failure(**row) for row in store.catalog.failures()]

    # -- writing ------------------------------------------------------------------------------------------------
    def update(self, folders: Sequence[str | os.PathLike[str]] = (), *, model: str | None = None,
               reindex: bool = False, progress: ProgressCallback | None = None, wait: bool = False,
               **options: Any) -> Report:
        """Index ``folders`` (none: every folder the index already has): new and changed files embedded, deleted
        ones dropped; the same report ``clipsearch index --json`` prints. ``options`` are ``indexer.options.Options``
        fields (include_hidden, exclude, batch_size, workers, ...); ``index_type``, ``vocabulary`` and ``words`` as for the
        CLI, and ``faces`` (on, later, off). ``wait``: wait for another writer instead of failing."""
        from indexer.job import IndexJob
        from indexer.options import Options

        index_type = options.pop("index_type", None)
        vocabulary = options.pop("vocabulary", None)
        words = options.pop("words", None)
        faces = options.pop("faces", None)
        job = IndexJob(self.directory, [os.fspath(f) for f in folders], model, reindex, self.device, self.precision,
                       Options(**options), on_wait=(lambda holder: None) if wait else None, index_type=index_type,
                       vocabulary=vocabulary, words=words, faces=faces, quiet=True)
        if self._job is not None:
            job._encoder = self._job._encoder  # noqa: SLF001 - the model stays loaded between updates
        self._job = job
        report = job.run(_Progress(progress) if progress is not None else None)
        self._drop_searcher()  # the next read sees this run's generation and model
        return report

    def forget(self, folders: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
        """Drop folders and every photo under them (the files are untouched); a sub-folder of an indexed folder stays
        out of later runs. By folder: ``{"removed": N, "excluded_from": ROOT or None}``."""
        from indexer.forget import forget_folders

        dropped = forget_folders(self.directory, [os.fspath(f) for f in folders])
        self._drop_searcher()
        return dropped

    def check(self, repair: bool = False) -> CheckResult:
        """Whether catalog, stored vectors and FAISS index agree; ``repair`` mends what can be (nothing re-embedded)."""
        self._drop_searcher()
        return checking.check(self.directory, repair)

    # -- lifetime -----------------------------------------------------------------------------------------------
    def _reader(self, separate: bool = False) -> Any:
        """The searcher's store when one is open (no second connection) and not ``separate``, else a reader for this
        call."""
        from contextlib import nullcontext

        from clipsearch.store import StoreReader

        if self._searcher is not None and not separate:
            return nullcontext(self._searcher.store)
        return StoreReader.open(self.directory)

    def _drop_searcher(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None

    def close(self) -> None:
        self._drop_searcher()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({str(self.directory)!r})"


class _Progress:
    """``indexer.report.Progress`` over a ``progress(done, found)`` callback."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._done = self._found = 0

    def found(self, n: int = 1) -> None:
        self._found += n
        self._callback(self._done, self._found)

    def done(self, n: int = 1) -> None:
        self._done += n
        self._callback(self._done, self._found)

    def close(self) -> None: ...


def open_index(directory: str | os.PathLike[str] | None = None, *, device: str = "auto",
               precision: str = "auto") -> Index:
    """The index at ``directory``, or the default one. Nothing is read until a call needs it."""
    return Index(directory, device=device, precision=precision)



def _under(folder: str) -> Callable[[str], bool]:
    """Whether a catalog path is the folder ``folder`` or inside it (as ``StoreReader.file_rows(within)`` selects)."""
    prefix = folder.rstrip(os.sep) + os.sep
    bare = folder.rstrip(os.sep)
    return lambda path: path.startswith(prefix) or path == bare
