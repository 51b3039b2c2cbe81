"""An indexing job as the user asked for it: which index, folders, model; run once or again and again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.encoders import onnx_text
from clipsearch.errors import UserError
from clipsearch.store.words import MODES, check_default_mode
from clipsearch.zeroshot import vocabulary
from indexer.options import Options
from indexer.report import Progress, Report
from indexer.run import IndexRun, resolve_roots
from indexer.walk import Rules

if TYPE_CHECKING:
    from clipsearch.encoders import Encoder, ModelSpec
    from clipsearch.store import StoreWriter


@dataclass
class IndexJob:
    directory: Path
    folders: Sequence[str] = ()
    model: str | None = None
    reindex: bool = False
    device: str = "auto"
    precision: str = "auto"
    options: Options = field(default_factory=Options)
    on_wait: Callable[[str], None] | None = None  # set: wait for another writer instead of failing
    index_type: str | None = None  # None: keep what the index has (auto unless pinned before)
    vocabulary: str | None = None  # where tags come from: builtin, none or a label file; None: as recorded
    words: str | None = None  # read the text in pictures: on, later or off (``clipsearch.store.words``); None: as recorded
    faces: str | None = None  # the faces stage: on, later or off (``clipsearch.store.faces``); None: as recorded
    quiet: bool = False
    _encoder: Encoder | None = None  # kept between runs of a long-lived job (--every, watch)

    def rules(self) -> dict[str, Rules]:
        """How each indexed folder is walked, as recorded: what ``watch`` follows too."""
        from clipsearch.store import StoreReader

        with StoreReader.open(self.directory) as store:
            return {root: Rules.from_settings(settings) for root, settings in store.catalog.root_settings().items()}

    def roots(self) -> list[str]:
        """The folders this job covers: the ones given, or every folder the index holds."""
        from clipsearch.store import StoreReader, index_exists

        recorded: list[str] = []
        if index_exists(self.directory) and not self.folders:
            store = StoreReader.open(self.directory)
            recorded = store.catalog.roots()
            store.close()
        return resolve_roots(self.folders, recorded)

    def _record_settings(self, store: StoreWriter, roots: Sequence[str]) -> None:
        """Apply what this job's options change (hidden files, exclusions) to its folders' recorded rules: a later
        plain `index` or `watch` follows them. A folder seen for the first time is recorded with its rules."""
        recorded = store.catalog.root_settings()
        options = self.options
        for root in roots:
            before = Rules.from_settings(recorded.get(root, {}))
            after = before.changed(options.include_hidden, options.exclude, options.clear_excludes)
            if root not in recorded or after != before:
                store.set_root_settings(root, after.settings())

    def _load(self, spec: ModelSpec, fingerprint: str | None = None) -> Encoder:
        """The model for ``spec``, loaded once and kept between runs of a long-lived job (--every, watch).

        ``fingerprint``: the model the index records, whose exported image tower may then embed without torch."""
        from clipsearch.encoders import load_encoder

        if self._encoder is None or self._encoder.spec != spec.text:
            # With --engine ray the model actors embed (on the device asked for); this copy only describes the model
            # to them and embeds the tag stage's labels, on the CPU, leaving a GPU here to a local Ray's actors.
            on_ray = self.options.engine == "ray"
            self._encoder = load_encoder(spec, device="cpu" if on_ray else self.device,
                                         precision="auto" if on_ray else self.precision,
                                         fingerprint=None if on_ray else fingerprint)
        return self._encoder

    def run(self, progress: Progress | None = None, scan: Sequence[str] | None = None) -> Report:
        """One incremental run over the job's folders, or only over ``scan`` (folders inside them)."""
        from clipsearch.store import FORMAT_VERSION, StoreWriter

        asked, tag_vocabulary = self._check()
        with StoreWriter.open(self.directory, on_wait=self.on_wait) as store:
            roots = resolve_roots(self.folders, store.catalog.roots())
            get_encoder = self._bind_model(store, asked)
            dropped = self._apply_settings(store, roots if scan is None else [], tag_vocabulary)
            store.commit()  # the settings, before the run (a no-op when nothing changed)
            if scan is None:
                report = IndexRun(store, roots, get_encoder, self.options, progress).run()
            else:
                report = IndexRun(store, scan, get_encoder, self.options, progress, record_roots=False).run()
            if dropped is not None:
                report.dropped_faces(dropped)  # said, not silent: the names were the user's
            if store.upgraded_from is not None:
                report.notes.insert(0, f"the index was upgraded in place from format {store.upgraded_from} to "
                                       f"{FORMAT_VERSION}; nothing was re-embedded")
        if self._encoder is not None and onnx_text.export_enabled():
            # The model is loaded anyway: export its text tower once, so that later `search "words"`
            # runs start without torch (encoders/onnx_text.py). After the lock is released.
            self._encoder.export_text_tower(quiet=self.quiet)
        self._export_image_tower()
        return report

    def _check(self) -> tuple[ModelSpec | None, str | None]:
        """Everything a command could be refused for, checked before anything is written (a refused command leaves
        no catalog, no folder and no setting behind): the model name, the runtime, the engine, the index type
        (against the model's size), the vocabulary, the words and faces settings, and for a new index the folders
        and that the model loads. The model asked for and the vocabulary setting to record, if any."""
        from clipsearch.encoders import DEFAULT_MODEL, check_runtime, parse_spec
        from clipsearch.store import index_exists, vector_index

        asked = parse_spec(self.model) if self.model else None
        check_runtime(self.device, self.precision)
        if self.options.engine == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise UserError("--engine ray needs Ray: pip install 'clipsearch[ray]'")
        if self.index_type is not None:
            vector_index.canonical(self.index_type)
        tag_vocabulary = vocabulary.setting(self.vocabulary) if self.vocabulary is not None else None
        if self.words is not None and self.words not in MODES:
            raise UserError(f"--words must be one of {', '.join(MODES)}, not {self.words[:20]!r}")
        check_default_mode()
        _check_faces(self.faces)
        if not index_exists(self.directory):
            resolve_roots(self.folders, [])
            encoder = self._load(asked or parse_spec(DEFAULT_MODEL))
            if self.index_type is not None:
                vector_index.canonical(self.index_type, encoder.dim)
        return asked, tag_vocabulary

    def _bind_model(self, store: StoreWriter, asked: ModelSpec | None) -> Callable[[], Encoder]:
        """The model this run embeds with, recorded first where it is new to the index (a new index, a model switch
        with --reindex, --reindex): the loader the run calls once a file needs it."""
        from clipsearch.encoders import DEFAULT_MODEL, parse_spec
        from clipsearch.store import ModelRecord, embedding_model, vector_index

        recorded = store.catalog.pending_model or store.catalog.model  # a re-embedding under way is what runs go on with
        wanted = asked or parse_spec(recorded.spec if recorded else DEFAULT_MODEL)
        keep = recorded is not None and store.catalog.count() > 0 and wanted.text == recorded.spec
        embedding_model.refuse_switch(store.catalog, wanted.text, self.reindex)  # before the model loads
        if self.index_type is not None:
            vector_index.canonical(self.index_type, recorded.dim if keep and recorded else self._load(wanted).dim)

        def get_encoder() -> Encoder:
            encoder = self._load(wanted, recorded.fingerprint if keep and recorded else None)
            if keep and recorded and encoder.fingerprint != recorded.fingerprint:
                raise UserError(f"the weights or preprocessing of {wanted.text} changed since this index was "
                                "built; to re-embed everything with them: clipsearch index --reindex")
            return encoder

        if not keep or self.reindex:  # a new index, a model switch or --reindex: record the model before any work
            encoder = get_encoder()
            store.bind_model(ModelRecord(encoder.spec, encoder.fingerprint, encoder.dim), reindex=self.reindex)
            store.remember("logit_scale", repr(encoder.logit_scale))
        self.reindex = False  # a long-lived job switches models once, not on every run
        return get_encoder

    def _apply_settings(self, store: StoreWriter, roots: Sequence[str],
                        tag_vocabulary: str | None) -> dict[str, Any] | None:
        """What this job's options change in the index's settings (``roots``: the folders whose rules it records;
        none for a rescan). What ``--faces off`` dropped, if it did."""
        if roots:
            self._record_settings(store, roots)
        if self.index_type is not None:
            store.set_index_type(self.index_type)
        if tag_vocabulary is not None:
            store.remember("vocabulary", tag_vocabulary)
        if self.words is not None:
            store.words_writer().set_mode(self.words)
        if self.faces is not None and self.faces != store.catalog.faces.setting():
            return store.catalog.faces.switch(self.faces)  # off: every face, person and name dropped
        return None

    def _export_image_tower(self) -> None:
        """The model is loaded on the CPU: export its image tower once, so that later small runs embed without torch
        and ``--precision int8`` can quantize it (encoders/onnx_image.py)."""
        from clipsearch.encoders import onnx_image

        encoder = self._encoder
        if encoder is not None and encoder.device == "cpu" and self.options.engine != "ray" \
                and onnx_image.export_enabled():
            encoder.export_image_tower(quiet=self.quiet)


def _check_faces(setting: str | None) -> None:
    """``--faces``: one of the settings, and on only where dlib and its models are installed."""
    from clipsearch.store.faces import SETTINGS

    if setting is None:
        return
    if setting not in SETTINGS:
        raise UserError(f"--faces must be {', '.join(SETTINGS)}, not {setting[:20]!r}")
    if setting == "on":
        from clipsearch.faces import detect

        if (why := detect.missing()) is not None:
            raise UserError(f"--faces on: {why}")
