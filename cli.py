"""clipsearch command line: ``clipsearch index``, ``search`` and ``info`` (also ``python cli.py ...``).

Heavy libraries (torch, open_clip, faiss) are imported inside the commands
that need them so that ``--help`` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from clipsearch.console.errors import run_command_line, stop_if_interrupted, stop_on_sigterm, user_errors
from clipsearch.console.help import command_options
from clipsearch.console.output import (
    ProgressBar,
    print_check,
    print_failures,
    print_hits,
    print_info,
    print_json,
    print_models,
    print_paths,
    print_report,
    thumbnails,
)
from clipsearch.display import counted, shown
from clipsearch.errors import Terminated, UserError
from clipsearch.location import ENV_VAR, resolve_index_dir
from indexer.walk import EXCLUDE_RULES

app = typer.Typer(
    help="Private, local search over your photos by what is in them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from clipsearch import __version__

        typer.echo(f"clipsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                   help="Print clipsearch's version and exit.")] = False) -> None:
    """Private, local search over your photos by what is in them."""

IndexOpt = Annotated[
    Optional[Path],
    typer.Option("--index", help=f"Index directory [default: ${ENV_VAR}, else $XDG_DATA_HOME/clipsearch].",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), fp32, bf16, fp16, "
                                           "int8 (the CPU, ONNX Runtime; `clipsearch models` shows its agreement).")
]


@app.command(**command_options(short_help='Index folders of photos; run again, only what changed is done.'))
def index(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Folders of photos. Without one, every folder already in the index is brought up to date.",
        show_default=False)] = None,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="A preset (fast, best, multilingual, demo), ARCH:TAG (open_clip), ARCH:/path/to/checkpoint.pt, "
        "hf:ORG/NAME or hf:/dir (Hugging Face CLIP/MetaCLIP/ALIGN/SigLIP), ARCH:none (random). See 'clipsearch models'. "
        "Recorded in the index [default: fast = ViT-B-32-quickgelu:metaclip_fullcc].", show_default=False)] = None,
    reindex: Annotated[bool, typer.Option(
        "--reindex", help="Switch an existing index to --model, re-embedding everything.")] = False,
    include_hidden: Annotated[Optional[bool], typer.Option(
        "--include-hidden/--no-include-hidden", help="Index hidden files and folders of these folders, or stop to. "
        "Remembered by each folder [default: as set before; hidden files skipped].", show_default=False)] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", help="Leave out what this pattern matches; repeatable; remembered by each folder. "
        + EXCLUDE_RULES, show_default=False)] = None,
    clear_excludes: Annotated[bool, typer.Option(
        "--clear-excludes", help="Forget these folders' exclusions (those of --exclude and of 'forget SUBFOLDER') "
        "first.")] = False,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Images per model call [default: 32 on the CPU, 128 per GPU].", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="Decode workers [default: number of CPUs].", show_default=False)] = None,
    worker_kind: Annotated[str, typer.Option(
        "--worker-kind", help="What the decode workers are: threads, processes (Linux: each with its own GIL, and a "
        "decoder crash costs one file), or auto (processes where they can run, threads elsewhere and for Hugging Face "
        "models).")] = "auto",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    decode: Annotated[str, typer.Option(
        "--decode", help="Where JPEGs are decoded: auto (baseline JPEGs on the GPU with nvJPEG when the model runs on "
        "one, sharing the work with the CPU workers; everything else on the CPU), cpu, or gpu (fail if it cannot).")] = "auto",
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    commit_every: Annotated[int, typer.Option(
        "--commit-every", min=1, help="Commit after this many images (and at least every 30 s).")] = 256,
    wait: Annotated[bool, typer.Option("--wait", help="If another run holds the index, wait for it instead of exiting.")] = False,
    index_type: Annotated[Optional[str], typer.Option(
        "--index-type", help="FAISS index type: auto (exact while small, then IVF with codes that fit memory, then "
        "lists on disk), Flat, IVF<lists>,<codes> with codes Flat, SQ8, SQ4, SQfp16 or PQ<m> (e.g. IVF4096,SQ8), or "
        "IVF<lists>_HNSW32,PQ<m> (lists on disk, e.g. IVF65536_HNSW32,PQ64). Remembered by the index; exact until "
        "there are enough photos to train it.", show_default=False)] = None,
    vocabulary: Annotated[Optional[str], typer.Option(
        "--vocabulary", help="Where photos' tags come from: builtin (everyday photo concepts), a label file (one label "
        "per line), or none. Remembered by the index; a change re-tags every photo from its stored vector "
        "[default: as set before; builtin].", show_default=False)] = None,
    words: Annotated[Optional[str], typer.Option(
        "--words", help="Read the text in photos (signs, receipts, screenshots) for 'search --text': on (each run "
        "reads the photos not read yet, after embedding), later (not now: runs skip it until --words on; what was "
        "read stays), or off (what was read is dropped). Names, keywords and captions are kept whatever this says. "
        "Remembered by the index [default: as set before; on].", show_default=False)] = None,
    faces: Annotated[Optional[str], typer.Option(
        "--faces", help="Find the faces in photos and group them into people ('clipsearch people', search --person): "
        "on; later (keep what was found, look for no more until on again); off (keep no face data: what was found "
        "is deleted). Remembered by the index; on finds the faces of photos indexed before too, re-embedding nothing. "
        "Needs pip install 'clipsearch[faces]' [default: as set before; off].", show_default=False)] = None,
    every: Annotated[Optional[str], typer.Option(
        "--every", help="Keep running: index again at this interval (30m, 1h, 1d), for containers without cron.",
        show_default=False)] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="Where photos are decoded and embedded: local (this machine), or ray (a Ray cluster: "
        "pip install 'clipsearch[ray]'; the folders must be mounted at the same path on every node).",
        rich_help_panel="Ray")] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address", help="The Ray cluster (ray://head:10001) [default: RAY_ADDRESS, else a local Ray started for "
        "the run].", show_default=False, rich_help_panel="Ray")] = None,
    replicas: Annotated[Optional[int], typer.Option(
        "--replicas", min=1, help="Model replicas (actors) [default: one per GPU, else one per 8 CPUs].",
        show_default=False, rich_help_panel="Ray")] = None,
    gpus_per_replica: Annotated[Optional[float], typer.Option(
        "--gpus-per-replica", "--gpus-per-worker", min=0, help="GPUs each model replica holds (0.5: two share one) "
        "[default: 1 where the cluster has GPUs, else 0].", show_default=False, rich_help_panel="Ray")] = None,
    decode_cpus: Annotated[float, typer.Option(
        "--decode-cpus", min=0.1, help="CPUs each decode task reserves.", rich_help_panel="Ray")] = 1.0,
) -> None:
    """Index (or update) folders of photos: new and changed files are embedded, deleted ones dropped.

    Run it again at any time (cron, systemd timer): unchanged files (same size
    and mtime) are not opened, renamed or copied files reuse their vectors, and
    progress is committed as it goes. Exit status is 0 when the index was
    committed, even if some files could not be read (they are listed).

    Examples:

    \b
      clipsearch index ~/Pictures                  # first run embeds everything
      clipsearch index                             # every indexed folder (cron)
      clipsearch index ~/Pictures --exclude Trash --json
      clipsearch index /mnt/photos --engine ray --address head:6379
    """
    with user_errors():
        from indexer.job import IndexJob
        from indexer.options import Options, RayOptions

        directory = resolve_index_dir(index_dir)

        def waiting(holder: str) -> None:
            if not quiet:
                typer.echo(f"clipsearch: waiting for PID {holder}, which is writing to {directory}", err=True)

        job = IndexJob(directory, folders or [], model, reindex, device, precision,
                       Options(include_hidden=include_hidden, exclude=tuple(exclude or ()), clear_excludes=clear_excludes,
                               batch_size=batch_size, workers=workers,
                               commit_every=commit_every, decode=decode, worker_kind=worker_kind, engine=engine,
                               ray=RayOptions(address, replicas, gpus_per_replica, decode_cpus, device=device,
                                              precision=precision)),
                       on_wait=waiting if wait or every else None, index_type=index_type, vocabulary=vocabulary,
                       words=words, faces=faces, quiet=quiet or as_json)
        stop_on_sigterm()
        if every:
            from clipsearch.console.schedule import parse_interval, repeat

            repeat(job, parse_interval(every), as_json, quiet)
            return
        report = job.run(ProgressBar(enabled=not quiet and not as_json and sys.stderr.isatty()))
    print_report(report, directory, as_json, quiet)
    if report.interrupted:
        how = "terminated" if report.terminated else "interrupted"
        typer.echo(f"clipsearch: {how}; what was done is committed, run again to continue", err=True)
        raise typer.Exit(143 if report.terminated else 130)


@app.command(**command_options(short_help='Index folders, then index their changes as they happen.'))
def watch(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Folders to watch. Without one, every folder already in the index.", show_default=False)] = None,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", help="As for index.", show_default=False)] = None,
    debounce: Annotated[float, typer.Option("--debounce", min=0.0,
                                            help="Seconds of quiet after a change before indexing it.")] = 2.0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Index the folders, then keep the index in step with them: changes are indexed within seconds.

    Only the folders where something changed are rescanned. Stop with Ctrl-C.

    Examples:

    \b
      clipsearch watch ~/Pictures
      clipsearch watch --json                      # every indexed folder, a report per run
    """
    with user_errors():
        from indexer.job import IndexJob
        from indexer.watch import watch_folders

        directory = resolve_index_dir(index_dir)
        job = IndexJob(directory, folders or [], model, device=device, precision=precision,
                       on_wait=lambda holder: None, quiet=quiet or as_json)
        stop_on_sigterm()

        def run(scan: list[str] | None = None) -> None:
            report = job.run(scan=scan)
            print_report(report, directory, as_json, quiet)
            stop_if_interrupted(report)

        def ready(roots: list[str]) -> None:
            if not quiet and not as_json:
                typer.echo(f"watching {shown(', '.join(roots))} (Ctrl-C stops)", err=True)

        def changed(folders_changed: list[str]) -> None:
            try:
                run(folders_changed)
            except UserError as exc:
                typer.echo(f"clipsearch: error: {shown(str(exc))}", err=True)

        try:
            run()
            watch_folders(job.roots(), changed, debounce=debounce, ready=ready, exclude=[str(directory)],
                          rules=job.rules())
        except Terminated:
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            return  # Ctrl-C is how a watch ends: a run in progress committed first


@app.command(**command_options(short_help='Find photos by words, by an image, or like an indexed photo.'))
def search(
    query: Annotated[Optional[list[str]], typer.Argument(
        help="What to look for: words, or terms joined by + and - (\"dog\" + \"beach\" - \"people\"), each words, "
        "an image file or like:ID, with an optional weight (2:sunset).", show_default=False)] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Find photos like this image instead.",
                                                  show_default=False)] = None,
    like: Annotated[Optional[str], typer.Option("--like", help="Find photos like the indexed photo with this id "
                                                "(the \"id\" of --json; the photo itself is left out).",
                                                show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="How many results (1 to 10,000).")] = 10,
    within: Annotated[Optional[str], typer.Option("--in", help="Only results under this folder.",
                                                  show_default=False)] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many best results (the next page).")] = 0,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", help="Only photos with this tag (see 'clipsearch tags'); "
                                                     "repeatable: photos with every one.", show_default=False)] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="Only photos whose words match: the text read in the "
                                                "picture, keywords and captions, file and folder names. Each word is "
                                                "found anywhere (any case and accents); \"quoted phrases\" exactly. "
                                                "Alone, ranked by the words; with a query, by it.",
                                                show_default=False)] = None,
    after: Annotated[Optional[str], typer.Option("--after", help="Only photos taken on or after this date (2023-01-01 "
                                                 "or 2023-01-01T18:00; EXIF date, else the file's).",
                                                 show_default=False)] = None,
    before: Annotated[Optional[str], typer.Option("--before", help="Only photos taken before this date (a bare date "
                                                  "includes that day).", show_default=False)] = None,
    camera: Annotated[Optional[str], typer.Option("--camera", help="Only photos from a camera whose make or model "
                                                  "contains this (any case): 'Pixel 6', canon.", show_default=False)] = None,
    kind: Annotated[Optional[list[str]], typer.Option("--type", help="Only files of this type (jpg, png, heic, ...); "
                                                      "repeatable.", show_default=False)] = None,
    min_pixels: Annotated[Optional[str], typer.Option("--min-pixels", help="Only photos of at least this many pixels "
                                                      "(2M, 12MP, 1920x1080).", show_default=False)] = None,
    near: Annotated[Optional[str], typer.Option("--near", help="Only photos taken within RADIUS of a place: "
                                                "LAT,LON,RADIUS (46.5,7.9,30km).", show_default=False)] = None,
    person: Annotated[Optional[list[str]], typer.Option("--person", help="Only photos of this person (a name or an id; "
                                                        "see 'clipsearch people'); repeatable: photos of all of them. "
                                                        "Alone, every photo of them by date.", show_default=False)] = None,
    relevant: Annotated[bool, typer.Option("--relevant", help="Only the matches that stand out for this query (a "
                                           "cutoff from the query's own scores; see README), all of them up to "
                                           "10,000: -k and --offset page through them.")] = False,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Only matches scoring at least this "
                                                       "(cosine; a flat cutoff).", show_default=False)] = None,
    sort: Annotated[str, typer.Option("--sort", help="relevance (best first), date (oldest first) or -date (newest "
                                      "first): the page of best matches by date; with no query, every photo that "
                                      "passes the filters, by date.")] = "relevance",
    index_dir: IndexOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    paths: Annotated[bool, typer.Option("--paths", help="Print only the paths, one per line, exactly as on disk "
                                        "(for xargs and scripts).")] = False,
    null: Annotated[bool, typer.Option("-0", "--null", help="With --paths: end each path with a NUL byte instead of "
                                       "a newline (xargs -0; names may hold newlines).")] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Show each photo's thumbnail under its line, on terminals "
                                          "that show images (kitty, iTerm2, WezTerm, sixel; CLIPSEARCH_PREVIEW="
                                          "kitty|iterm|sixel|off chooses); plain text elsewhere.")] = False,
) -> None:
    """Find the photos that best match a text (or, with --image, a picture), best first.

    The score is the cosine similarity between the query and the photo. Words
    also match the text read in photos, their keywords and names: a photo whose
    words match ranks higher (hybrid ranking); --text searches the words alone.
    Filters combine; --json results carry each photo's date taken, camera,
    size, tags and the text read in it.

    Examples:

    \b
      clipsearch search "dog on a beach" -k 20
      clipsearch search --image query.jpg --in ~/Pictures/2024
      clipsearch search "birthday cake" --after 2023-01-01 --before 2023-12-31 --sort date
      clipsearch search "mountains" --camera "Pixel 6" --type jpg --near 46.5,7.9,30km
      clipsearch search "dog" + "beach" - "people"
      clipsearch search "2:sunset" + ./ref.jpg --relevant --sort date
      clipsearch search --sort -date --after 2024-06-01      # no query: browse
      clipsearch search --tag beach "sunset"
      clipsearch search --text '"total 23.95" acme'    # the words in and around photos
      clipsearch search "beach" --person Mom --person Dad
      clipsearch search "receipt" --paths -0 | xargs -0 ls -l
    """
    with user_errors():
        from clipsearch.app import Index

        if as_json and (paths or null):
            raise UserError(f"give --json or {'--paths' if paths else '-0'}, not both: they are two ways to print results")
        question = Index.question(query or None, image=image, like=like, k=k, offset=offset, sort=sort,
                                  relevant=relevant, min_score=min_score, within=within, tags=tag or (),
                                  after=after, before=before, camera=camera, types=kind or (),
                                  min_pixels=min_pixels, near=near, text=text,
                                  people=person or ())  # checked before the index opens
        with Index(index_dir, device=device, precision=precision) as index:
            hits = index.answer(question)
            if paths or null:
                print_paths([hit.path for hit in hits], b"\0" if null else b"\n")
            else:
                print_hits(hits, as_json, dates=sort != "relevance", places=near is not None,
                           preview=thumbnails(index) if preview and not as_json else None)
            if (left_out := hits.gone_note()) is not None:  # gone since the last run (search.engine._stand_behind)
                typer.echo(f"clipsearch: warning: {shown(left_out)}", err=True)
            for note in index.why_empty(question) if not hits and not hits.gone else []:
                typer.echo(f"clipsearch: note: {shown(note)}", err=True)
            # The model had to be loaded with torch this time: make the next text search start without it.
            index.searcher.query_model.prepare_fast_text(quiet=as_json)


@app.command(**command_options(short_help='Rank labels for photos (zero-shot): scores and probabilities.'))
def classify(
    paths: Annotated[list[str], typer.Argument(help="Photos or folders of photos.", show_default=False)],
    labels: Annotated[Optional[str], typer.Option("--labels", help="Candidate labels, separated by commas.",
                                                  show_default=False)] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Candidate labels, one per line.",
                                                        show_default=False)] = None,
    templates: Annotated[str, typer.Option("--templates", help="How labels are put into words for the model: photo "
                                           "(a few phrasings for personal photos), imagenet (OpenAI's 80 ImageNet "
                                           "templates), none (the label as it is).")] = "photo",
    top: Annotated[int, typer.Option("--top", min=1, help="How many labels per photo.")] = 5,
    index_dir: IndexOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", help="The model to use where there is no index "
                                                 "[default: the index's model].", show_default=False)] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Rank labels for each photo (zero-shot classification): cosine score and probability over the labels.

    Without --labels or --labels-file, the built-in vocabulary of everyday photo concepts is used
    (image -> text). Indexed photos use their stored vectors; other files are decoded and embedded
    as 'index' does. The probability is the softmax over the labels at the model's own logit scale.

    Examples:

    \b
      clipsearch classify photo.jpg --labels "playing music, playing sports"
      clipsearch classify ~/Pictures/2024 --labels-file labels.txt --top 3 --json
      clipsearch classify photo.jpg                # the built-in vocabulary
    """
    with user_errors():
        from clipsearch.app import Index
        from clipsearch.zeroshot import vocabulary

        if labels is not None and labels_file is not None:
            raise UserError("give --labels or --labels-file, not both")
        chosen = (vocabulary.from_list(labels) if labels is not None else vocabulary.read_file(labels_file)
                  if labels_file is not None else None)
        with Index(index_dir, device=device, precision=precision) as index:
            results = index.classify(paths, chosen, templates=templates, top=top, model=model)
    from clipsearch.console.labels_output import print_classified

    print_classified(results, as_json)
    if any(r.error for r in results) and all(r.error for r in results):
        raise typer.Exit(1)


@app.command(**command_options(short_help='Groups of copies of the same photo, the keeper suggested.'))
def duplicates(
    index_dir: IndexOpt = None,
    similar: Annotated[bool, typer.Option(
        "--similar", help="Also groups of similar shots (bursts, a small camera move): not copies, for a person to "
        "look at.")] = False,
    within: Annotated[Optional[str], typer.Option(
        "--in", help="Only photos under this folder.", show_default=False)] = None,
    paths_only: Annotated[bool, typer.Option(
        "--paths-only", help="Print only the copies the suggestion would not keep, one path per line (never similar "
        "shots: they are other photos).")] = False,
    null: Annotated[bool, typer.Option("-0", help="With --paths-only: end each path with a NUL byte.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Groups of copies of the same photo (resized, re-encoded, converted, framed, trimmed by a few percent,
    lightly recoloured, identical files), largest first, each with a suggested keeper: the most pixels, then an
    original format, then the earliest date. A shot with something added or from a moved camera is not a copy.

    clipsearch never deletes or moves a file: you decide. --similar adds groups of similar shots.

    Examples:

    \b
      clipsearch duplicates
      clipsearch duplicates --similar --in ~/Pictures/2024 --json
      clipsearch duplicates --paths-only -0 | xargs -0 -r mv -t ~/Trash/
    """
    with user_errors():
        from clipsearch.app import Index

        if null and not paths_only or as_json and paths_only:
            raise UserError("-0 goes with --paths-only" if not paths_only else "give --json or --paths-only, not both")
        with Index(index_dir) as index:
            found = index.duplicates(similar=similar, within=within)
        if found.unsigned:
            typer.echo(f"clipsearch: {found.unsigned} photos have no signature yet (indexed by an older clipsearch): "
                       "only identical files among them are found; 'clipsearch index' adds them", err=True)
    from clipsearch.console.duplicates_output import print_groups

    print_groups(found, as_json, paths_only, b"\0" if null else b"\n")


@app.command(**command_options(short_help='The tags in the index, with their counts of photos.'))
def tags(index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """The tags in the index, with how many photos carry each, most common first.

    'index' tags every photo from a vocabulary (index --vocabulary: builtin, a file, or none).

    Examples:

    \b
      clipsearch tags
      clipsearch tags --json
      clipsearch search --tag beach "sunset"
    """
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            rows = index.tags()
    from clipsearch.console.labels_output import print_tags

    print_tags(rows, as_json)


people_app = typer.Typer(help="The people whose faces were found (index --faces on): list, name, merge, split.",
                         invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None)
app.add_typer(people_app, name="people", short_help="The people found in photos: list, name, merge, split "
              "(index --faces on).")
PersonArg = Annotated[str, typer.Argument(help="A person: their id or their name.", show_default=False)]
FacesArg = Annotated[list[int], typer.Argument(help="Face ids ('clipsearch people show PERSON' lists them).",
                                               show_default=False)]


@people_app.callback()
def people(ctx: typer.Context, index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """The people whose faces were found, the most photographed first, with a photo of each.

    'clipsearch index --faces on' finds faces and groups them; a face seen once is nobody yet. Your names,
    merges and splits are kept: later runs only add new faces to people.

    Examples:

    \b
      clipsearch people
      clipsearch people name 3 "Mom"
      clipsearch people merge Mom 7                # 7 is Mom too
      clipsearch people show Mom                   # her faces, by face id
      clipsearch people split Mom 41 42            # faces 41 and 42 are someone else
      clipsearch people remove Mom 43              # face 43 is not Mom
      clipsearch people remove Mom 44 --not-a-face # face 44 is a badge: no one's, ever
      clipsearch people restore 44                 # it is a face after all
      clipsearch search "beach" --person Mom
    """
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            found = index.people()
    from clipsearch.console.people_output import print_people

    print_people(found, as_json)


@people_app.command("show")
def people_show(person: PersonArg, index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """A person's faces, each with its face id and a photo it is in."""
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            found, faces = index.person_faces(person)
    from clipsearch.console.people_output import print_faces

    print_faces(found, faces, as_json)


@people_app.command("name")
def people_name(person: PersonArg, name: Annotated[str, typer.Argument(help="Their name.", show_default=False)],
                index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Name a person (search --person NAME finds them from then on)."""
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            done = index.name_person(person, name)
    from clipsearch.console.people_output import print_decision

    print_decision(done, as_json, f"person {done['person']} is {shown(done['name'])}")


@people_app.command("merge")
def people_merge(person: PersonArg, others: Annotated[list[str], typer.Argument(
        help="The people who are that person too.", show_default=False)], index_dir: IndexOpt = None,
        as_json: JsonOpt = False) -> None:
    """Make several people one: their faces become the first one's (who keeps their name)."""
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            done = index.merge_people(person, others)
    from clipsearch.console.people_output import merged_line, print_decision

    print_decision(done, as_json, merged_line(done))


@people_app.command("split")
def people_split(person: PersonArg, faces: FacesArg, index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """These faces are someone else: they become a new person, and never join this one again."""
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            done = index.split_person(person, faces)
    from clipsearch.console.people_output import print_decision, split_line

    print_decision(done, as_json, split_line(done))


@people_app.command("remove")
def people_remove(person: PersonArg, faces: FacesArg, index_dir: IndexOpt = None, as_json: JsonOpt = False,
                  not_a_face: Annotated[bool, typer.Option(
                      "--not-a-face", help="They are not faces at all (a badge, a pattern): no run groups them again."
                  )] = False) -> None:
    """Not this person: these faces leave them and never come back (the next 'index' places them elsewhere).
    With --not-a-face, they are no one's, ever."""
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            done = index.not_this_person(person, faces, not_a_face=not_a_face)
    from clipsearch.console.people_output import print_decision, removed_line

    print_decision(done, as_json, removed_line(done))


@people_app.command("restore")
def people_restore(faces: FacesArg, index_dir: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Undo 'remove --not-a-face': these are faces after all (the next 'index' groups them)."""
    with user_errors():
        from clipsearch.app import Index
        from clipsearch.app import people as decisions

        with Index(index_dir) as index:
            done = decisions.restore(index.directory, faces)
    from clipsearch.console.people_output import print_decision

    n = len(done["restored"])
    print_decision(done, as_json, f"{n} {'face is a face' if n == 1 else 'faces are faces'} again: the next index run "
                   "groups them")


@app.command(**command_options(short_help='Drop folders from the index (the files are not touched).'))
def forget(
    folders: Annotated[list[str], typer.Argument(help="Indexed folders to drop from the index.", show_default=False)],
    index_dir: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop folders and every photo under them from the index (the photos themselves are not touched).

    A folder inside an indexed folder is also excluded from it, so later runs leave it out
    ('clipsearch info' shows the exclusions; 'index FOLDER --clear-excludes' takes them back).

    Examples:

    \b
      clipsearch forget /media/old-drive
      clipsearch forget ~/Pictures/private         # and left out of later runs
    """
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            dropped = index.forget(folders)
    if as_json:
        print_json({"removed": sum(d["removed"] for d in dropped.values()),
                    "folders": {path: d["removed"] for path, d in dropped.items()},
                    "excluded_from": {path: d["excluded_from"] for path, d in dropped.items() if d["excluded_from"]}})
    else:
        for path, d in dropped.items():
            typer.echo(f"dropped {counted(d['removed'], 'image')} under {shown(path)}" + (
                f"; it stays out of {shown(d['excluded_from'])} from now on" if d["excluded_from"] else ""))


@app.command(**command_options(short_help='Verify that catalog, vectors and FAISS index agree (--repair).'))
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild the FAISS index from the stored vectors "
                                         "(nothing is re-embedded) and drop rows whose vector is damaged.")] = False,
    index_dir: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify that catalog, stored vectors and FAISS index agree and are whole (every stored vector and index file
    against its checksum). Exit 0: nothing wrong, or all mended with nothing lost; exit 1: something is wrong, or a
    repair dropped photos whose vectors were damaged (the next index run embeds them again: the check lists them
    first).

    Examples:

    \b
      clipsearch check
      clipsearch check --repair --json
    """
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            result = index.check(repair=repair)
    print_check(result, as_json)
    if not result.ok:
        raise typer.Exit(1)


@app.command(**command_options(short_help='A search page and a JSON API on http://127.0.0.1:8000/.'))
def serve(
    ctx: typer.Context,
    index_dir: IndexOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Keep 127.0.0.1 unless you mean it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one; --json says "
                                      "which).")] = 8000,
    token: Annotated[Optional[str], typer.Option(
        "--token", envvar="CLIPSEARCH_TOKEN",
        help="Shared secret every request must carry (?token=, a bearer header, or the page's cookie). "
             "Use it with a non-local --host.")] = None,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        "--allow-host", help="Another name this server may be reached by (photos.local); repeatable. It always "
        "answers to localhost, to IP addresses and to --host; any other Host header is refused, so that a web page "
        "cannot rebind its name to this server.", show_default=False)] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Once serving, print one JSON line on stdout: "
                                          "{\"url\", \"host\", \"port\", \"index\"}.")] = False,
) -> None:
    """Serve a search page at / and a JSON API, with the model and index loaded once.

    Open http://127.0.0.1:8000/ for a grid of thumbnails: type words, drop or paste a
    photo, or ask for "more like this". The API: GET /search?q=TEXT&k=10&in=FOLDER,
    GET /search?like=ID, POST /search with an image as the body, GET /thumb/ID,
    GET /file/ID, GET /info. Only indexed files are served, by catalog id.
    A rebuild by 'clipsearch index' is picked up on the next query.

    Examples:

    \b
      clipsearch serve
      clipsearch serve --host 0.0.0.0 --port 8080 --token "$SECRET"
      curl 'http://127.0.0.1:8000/search?q=dog+on+a+beach&k=5'
    """
    with user_errors():
        from click.core import ParameterSource

        from search.server import serve as run_server

        if host not in ("127.0.0.1", "localhost", "::1"):
            advice = "" if token else " (add --token SECRET to require a shared secret)"
            typer.echo(f"clipsearch: warning: serving on {host}: anyone who can reach it can search and see your "
                       f"photos{advice}", err=True)
        directory = resolve_index_dir(index_dir)
        where = f"[{host}]" if ":" in host else host
        # a token given on the command line is printed (it is there already); one from the environment is not
        # (the line lands in logs and journald)
        typed = ctx.get_parameter_source("token") == ParameterSource.COMMANDLINE
        suffix = ("?token=" + token if typed else " (with the token of CLIPSEARCH_TOKEN)") if token else ""

        def ready(bound: int) -> None:  # said once it is true: the index open, the port bound
            if as_json:
                print_json({"url": f"http://{where}:{bound}/", "host": host, "port": bound, "index": str(directory)})
            typer.echo(f"clipsearch: serving {directory} on http://{where}:{bound}/{suffix} (Ctrl-C stops)", err=True)

        run_server(directory, host=host, port=port, device=device, precision=precision, token=token, on_ready=ready,
                   allowed_hosts=allow_host or ())


@app.command(**command_options(short_help='The models --model accepts, with size, cost and whether cached.'))
def models(
    as_json: JsonOpt = False,
    cached: Annotated[bool, typer.Option("--cached", help="Only models whose weights are on this machine.")] = False,
) -> None:
    """The models --model accepts: presets, every open_clip pretrained pair, known Hugging Face ids.

    Columns: embedding size, input resolution, image-tower cost relative to ViT-B/32
    (rough), whether the weights are already on this machine, and where --precision int8
    ran here, its mean cosine with fp32 on the first photos it embedded.

    Examples:

    \b
      clipsearch models
      clipsearch models --cached --json
    """
    with user_errors():
        from clipsearch.encoders.listing import list_models

        rows = [r for r in list_models() if r["cached"] or not cached]
    print_models(rows, as_json)


@app.command(**command_options(short_help='What is indexed, where, with which model; --failed: what failed.'))
def info(
    index_dir: IndexOpt = None,
    as_json: JsonOpt = False,
    failed: Annotated[bool, typer.Option("--failed", help="List the files that could not be indexed, and why "
                                         "(retried once they change).")] = False,
) -> None:
    """What is indexed, where, and with which model.

    Examples:

    \b
      clipsearch info
      clipsearch info --failed --json
    """
    with user_errors():
        from clipsearch.app import Index

        with Index(index_dir) as index:
            if failed:
                print_failures(index.failures(), as_json)
            else:
                print_info(index.info(), as_json)


def main() -> None:
    run_command_line(app)


if __name__ == "__main__":
    main()
