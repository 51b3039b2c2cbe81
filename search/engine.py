"""Answer queries over the committed index: one snapshot per query, the snapshot's model for its terms
(``search.query_model`` embeds them); the nearest, filtered, cut or paged hits, each with what the catalog holds of
it, and only hits the catalog stands behind (``search.vouch``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.errors import DamagedIndex, NoSuchPhoto, UserError
from clipsearch.store import StoreReader, vector_index
from search import moments, vouch, words
from search.filters import Filters
from search.query import MAX_K, Hit, Query, Term, check_page, combine
from search.query_model import QueryModel

if TYPE_CHECKING:
    import faiss
    import numpy as np



# A query runs the text tower (onnxruntime's thread pool) and then FAISS (OpenMP) on the same cores.
# OpenMP threads that spin-wait after each search steal the cores from the next text encoding: a query took
# twice as long (bench/search_scale.py). So search processes wait passively, unless the user chose a policy.
# (It takes effect because nothing has started OpenMP yet: faiss and torch are imported later.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Below this many vectors a CPU flat search answers in a few milliseconds: copying to a GPU costs more.
GPU_MIN_VECTORS = 200_000
# A filter that keeps at most this many photos is answered exactly from their stored vectors; past it, FAISS
# searches every IVF list under the filter (probing only some could return fewer hits than exist), which costs
# a scan of the codes with an id check each (bench/filters.py).
EXACT_FILTERED_MAX = 2_000
# A filter that keeps at least this share of the collection is applied to a plain search's hits instead
# (asked for twice the hits the share predicts): a search under a filter scans every IVF list.
POST_FILTER_SHARE = 0.2
COSINE_BOUND = 1.01  # |score| past this is no cosine of two unit vectors: a damaged index file (``Searcher._page``)


class Searcher:
    """An open index plus, loaded on first use, the model it was built with."""

    def __init__(self, index_dir: Path, device: str = "auto", precision: str = "auto", resident: bool = False) -> None:
        self.store = StoreReader.open(index_dir)
        model = self.store.catalog.model
        if model is None or self.store.catalog.count() == 0:
            self.store.close()
            raise UserError(f"the index at {index_dir} holds no images yet: run 'clipsearch index FOLDER'")
        self.query_model = QueryModel(model, device, precision, resident)  # what embeds the query's terms
        self._device = device
        self._index: tuple[int, faiss.Index] | None = None
        self._gpu_index: faiss.Index | None = None  # the GPU copy of _index, made on first unfiltered search
        self._sample: tuple[int, np.ndarray] | None = None  # (generation, background sample), see _background
        self._filtered: dict[tuple[object, ...], list[tuple[int, str | None]] | None] = {}  # see _passing

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def follow_model(self) -> None:
        """Bring the model in step with the last committed snapshot (a --reindex swapped it): cheap, for a server
        to call under its lock before ``prepare``."""
        with self.store.snapshot():
            self._current_index()

    def embed_indexed(self, file_id: int) -> np.ndarray:
        """The stored embedding of an indexed file ("more like this"): no model, no decoding."""
        vector = self.store.vectors.of_id(file_id)
        if vector is None:
            raise NoSuchPhoto(f"no indexed photo has id {file_id}")
        return vector

    def _current_index(self) -> faiss.Index:
        """The FAISS index of the snapshot being read, kept while the generation does not move. Call inside
        ``store.snapshot()``. A long-lived searcher (the server) thus follows rebuilds: a new committed generation is
        loaded on the next query, and a model switch (--reindex) drops the loaded model too."""
        generation = self.store.catalog.generation
        if self._index is None or self._index[0] != generation:
            if (model := self.store.catalog.model) is not None:
                self.query_model.follow(model)
            self._index = (generation, self.store.vector_index())
            self._gpu_index = None
        return self._index[1]

    def _gpu(self, index: faiss.Index) -> faiss.Index:
        """Large collections are searched on the GPUs when faiss was built with them and CUDA is allowed."""
        if index.ntotal < GPU_MIN_VECTORS or self._device == "cpu":
            return index
        if self._gpu_index is None:
            self._gpu_index = vector_index.on_gpus(index) or index  # none, or a type without a GPU version: the CPU
        return self._gpu_index

    def embed(self, term: Term) -> np.ndarray:
        """One term's unit vector, with the model this searcher holds now."""
        if term.kind == "text":
            return self.query_model.embed_text(str(term.value))
        if term.kind == "image":
            return self.query_model.embed_image_bytes(term.value, term.label)  # type: ignore[arg-type]
        return self.embed_indexed(int(term.value))  # type: ignore[arg-type]

    def answer(self, query: Query) -> vouch.Hits:
        """The hits for ``query``, from one committed snapshot: the model is brought in step with that snapshot
        before any term is embedded, so a rebuild with another model (--reindex) never meets a vector of the old one.
        Each hit carries its metadata; ``query.sort`` orders the page (or, with no terms, browses)."""
        with self.store.snapshot():
            return vouch.stand_behind(self.store, self._hits(query))

    def _hits(self, query: Query) -> list[Hit]:  # unchecked (``search.vouch``): call inside ``store.snapshot()``
        passing = self._passing(query.filters, dates=not query.terms)
        passing = passing if query.text is None else words.narrowed(self.store, query.text, passing, not query.terms)
        if not query.terms:
            return words.placed(self.store, self._with_meta(self._browse(passing, query)), query.text)
        index = self._current_index()
        vector = combine([self.embed(t) for t in query.terms], [t.weight for t in query.terms])
        allowed = moments.with_moments(self.store, None if passing is None else [file_id for file_id, _ in passing])
        if query.relevant or query.min_score is not None:
            return self._with_meta(self._cut(index, vector, query, allowed), vector)
        nearest = lambda *a: self._nearest(index, vector, *a)  # noqa: E731
        hits = self._with_meta(words.hybrid(self.store, query, vector, allowed, nearest), vector)
        if query.sort != "relevance":
            hits.sort(key=lambda h: (h.meta["taken"] or "", h.id), reverse=query.sort == "-date")
        return hits

    def _cut(self, index: faiss.Index, vector: np.ndarray, query: Query, allowed: Sequence[int] | None) -> list[Hit]:
        """The matches past the cutoff (``--relevant``: the query's own, ``search.relevance``; or ``--min-score``),
        all of them ordered (by score or date), then the page asked for. Fetched in growing pages until one ends
        below the cutoff, up to MAX_K."""
        from search import relevance

        cut: float | None = query.min_score
        fetch = 256
        while True:
            hits = self._nearest(index, vector, fetch, 0, allowed, query.excluded)
            if not hits:
                return []
            if query.relevant:
                found = relevance.cutoff(float(hits[0].score or 0), self._background() @ vector)
                if found.score is None:
                    return []
                cut = found.score if cut is None else max(cut, found.score)
            if len(hits) < fetch or (hits[-1].score or 0) < cut or fetch >= MAX_K:
                break
            fetch = min(fetch * 4, MAX_K)
        kept = [h for h in hits if (h.score or 0) >= cut]
        if query.sort != "relevance":
            dated = self.store.catalog.metadata.of_ids([h.id for h in kept])
            kept.sort(key=lambda h: (dated.get(h.id, {}).get("taken") or "", h.id), reverse=query.sort == "-date")
        page = kept[query.offset : query.offset + query.k]
        return [Hit(rank, h.path, h.score, h.id) for rank, h in enumerate(page, start=query.offset + 1)]

    def _background(self) -> np.ndarray:
        """A fixed sample of the collection's vectors (evenly spaced ids), kept while the generation holds: what an
        unrelated photo scores for a query (``search.relevance``)."""
        import numpy as np

        from search import relevance

        generation = self.store.catalog.generation
        if self._sample is None or self._sample[0] != generation:
            ids = sorted(self.store.catalog.file_ids())
            step = max(1, len(ids) // relevance.SAMPLE)
            blocks = [matrix for _, matrix in self.store.vectors.iter_vectors(ids[::step][: relevance.SAMPLE])]
            dim = self.query_model.model.dim
            self._sample = (generation, np.concatenate(blocks) if blocks else np.zeros((1, dim), "float32"))
        return self._sample[1]

    def _passing(self, filters: Filters, dates: bool) -> list[tuple[int, str | None]] | None:
        """``filters.passing``, remembered for the last few filters while the generation holds: evaluating a filter
        over a million catalog rows takes seconds of SQL (bench/filters.py), and the page asks again for every
        page of results and every new query under the same filters."""
        key = (self.store.catalog.generation, filters.criteria(), dates)
        if filters.people:  # people are named and merged without a new generation: asked each time (an index look-up)
            return filters.passing(self.store, dates)
        if key not in self._filtered:
            if len(self._filtered) >= 8:
                self._filtered.pop(next(iter(self._filtered)))
            self._filtered[key] = filters.passing(self.store, dates)
        return self._filtered[key]

    def _browse(self, passing: list[tuple[int, str]] | None, query: Query) -> list[Hit]:
        """Every photo that passes, by date: oldest first, or newest with -date (or as given: ``search.words``)."""
        rows = passing if passing is not None else self.store.catalog.metadata.matching(Filters().criteria())
        if query.sort != "relevance":  # relevance without terms: ``search --text`` alone, in the words' order
            rows = sorted(rows, key=lambda row: (row[1] or "", row[0]), reverse=query.sort == "-date")
        page = rows[query.offset : query.offset + query.k]
        paths = self.store.catalog.paths(i for i, _ in page)
        return [Hit(rank, paths[i], None, i) for rank, (i, _) in enumerate(page, start=query.offset + 1)]

    def _with_meta(self, hits: list[Hit], vector: np.ndarray | None = None) -> list[Hit]:
        """Each hit with its metadata, its tags, the text read in it (None: not read) and who is in it, as --json
        and the server give them; a video's moments too."""
        ids = [h.id for h in hits]
        meta, tagged = self.store.catalog.metadata.of_ids(ids), self.store.catalog.tags.of_ids(ids)
        seen, people = self.store.catalog.words.seen_of_ids(ids), self.store.catalog.faces.of_ids(ids)
        return moments.attach(self.store, [Hit(h.rank, h.path, h.score, h.id, {
            **meta.get(h.id, {}), "tags": [t for t, _ in tagged.get(h.id, [])],
            "text": seen.get(h.id, {}).get("text"), "people": people.get(h.id, [])}) for h in hits], vector)

    def search(self, query: np.ndarray, k: int = 10, within: str | None = None, offset: int = 0,
               exclude: int | None = None) -> vouch.Hits:
        """The ``k`` nearest files to a vector, best first, optionally only those under folder ``within`` (the hits
        vouched for by the catalog, ``search.vouch``; whether a file is on this disk is the caller's question).
        ``offset`` skips that many best hits (the next page); ``exclude`` leaves out one file id (a "more like this"'s
        own). Ranks count from 1 at the best hit overall."""
        check_page(k, offset)
        with self.store.snapshot() as store:  # a writer committing meanwhile is not seen half-way
            index = self._current_index()
            allowed = moments.with_moments(store, Filters(within).allowed_ids(store))
            found = self._nearest(index, query, k, offset, allowed, set() if exclude is None else {exclude})
            return vouch.stand_behind(store, moments.attach(store, found, query), on_disk=False)

    def _nearest(self, index: faiss.Index, query: np.ndarray, k: int, offset: int, allowed: Sequence[int] | None,
                 exclude: set[int]) -> list[Hit]:
        """Call inside ``store.snapshot()``: the index and the paths must come from one state."""
        import faiss
        import numpy as np

        needed = k + offset + len(exclude)
        params, available = None, index.ntotal
        if allowed is not None:
            if not allowed:
                return []
            if len(allowed) <= EXACT_FILTERED_MAX:
                return self._exact(query, k, offset, allowed, exclude)
            if len(allowed) >= POST_FILTER_SHARE * index.ntotal:
                hits = self._post_filtered(index, query, k, offset, allowed, exclude)
                if hits is not None:
                    return hits
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype="int64"))
            lists = vector_index.lists_in(index)
            if lists:  # an IVF index searches every list: a filter must not lose hits to the lists not probed
                params = faiss.SearchParametersIVF(sel=selector, nprobe=lists)
            else:
                params = faiss.SearchParameters(sel=selector)
            available = min(available, len(allowed))
        else:
            index = self._gpu(index)  # GPU indexes take no id selector: filtered searches stay on the CPU
        needed = min(needed, available)
        if needed == 0:
            return []
        # Equal scores (copies of one photo share a vector) come back from FAISS in no fixed order, and
        # which of them make the cut depends on k. Fetch past the cut until the score drops, then order
        # ties by id: page after page (offset) then neither repeats nor skips a photo.
        fetch = min(needed + 8, available)
        vector = np.asarray(query, dtype="float32").reshape(1, -1)
        while True:
            scores, found_ids = index.search(vector, fetch, params=params)
            raw = [(int(i), float(s)) for i, s in zip(found_ids[0], scores[0]) if i >= 0]
            found = moments.collapse(raw)  # a video's moments have ids of their own: enough files are fetched
            if fetch >= available or len(raw) < fetch or (len(found) >= needed and raw[-1][1] < found[needed - 1][1]):
                break
            fetch = min(fetch * 2, available)
        return self._page(found, k, offset, exclude)

    def _post_filtered(self, index: faiss.Index, query: np.ndarray, k: int, offset: int, allowed: Sequence[int],
                       exclude: set[int]) -> list[Hit] | None:
        """A filter that keeps much of the collection: the plain search, asked for enough more hits that ``k`` of
        them pass (twice what the share predicts), then filtered; None if too few passed (the caller searches
        under the filter instead)."""
        import numpy as np

        needed = k + offset + len(exclude)
        fetch = min(index.ntotal, int(needed * 2 * index.ntotal / len(allowed)) + 8)
        scores, found_ids = self._gpu(index).search(np.asarray(query, dtype="float32").reshape(1, -1), fetch)
        passing = set(allowed)
        found = moments.collapse((int(i), float(s)) for i, s in zip(found_ids[0], scores[0]) if int(i) in passing)
        if len(found) < needed or found[needed - 1][1] == float(scores[0][-1]):  # short, or ties past the cut
            return None
        return self._page(found, k, offset, exclude)

    def _page(self, found: list[tuple[int, float]], k: int, offset: int, exclude: set[int]) -> list[Hit]:
        # Queries and stored vectors are unit vectors: a score outside a cosine's range (or not a number) can only come
        # from a damaged index file, and is refused rather than ranked (float16 rows and SQ8 codes stay well inside
        # the margin).
        if any(not -COSINE_BOUND <= score <= COSINE_BOUND for _, score in found):
            worst = next(score for _, score in found if not -COSINE_BOUND <= score <= COSINE_BOUND)
            raise DamagedIndex(f"the index at {self.store.directory} is damaged (it scored a photo {worst:g}, "
                               "outside a cosine's range): 'clipsearch check --repair' rebuilds it from the "
                               "stored vectors")
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        found = [hit for hit in found if hit[0] not in exclude][offset : offset + k]
        paths = self.store.catalog.paths(i for i, _ in found)
        return [Hit(rank, paths[i], score, i) for rank, (i, score) in enumerate(found, start=offset + 1)]

    def _exact(self, query: np.ndarray, k: int, offset: int, allowed: Sequence[int], exclude: set[int]) -> list[Hit]:
        """The best of ``allowed`` by their stored vectors, every one scored: exact whatever the index type."""
        import numpy as np

        vector = np.asarray(query, dtype="float32").reshape(-1)
        needed = k + offset + len(exclude)
        found: list[tuple[int, float]] = []
        for ids, matrix in self.store.vectors.iter_vectors(allowed):
            scores = matrix @ vector
            found = moments.collapse([*found, *zip(ids.tolist(), scores.tolist())])  # a video once, at its best
            if len(found) > 4 * needed + 4096:  # keep memory bounded: the best so far, ties kept (sorted by id later)
                found.sort(key=lambda hit: -hit[1])
                cut = found[needed - 1][1]
                found = [hit for hit in found if hit[1] >= cut]
        return self._page(found, k, offset, exclude)

