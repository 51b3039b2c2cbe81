"""Words in and around photos (issue 34): the text read in pictures (rapidocr's shipped PP-OCR models), the keywords
and captions files carry, and their names, found by `search --text`, ranked beside the meaning by a plain search,
carried by --json and HTTP hits; read by a stage that is deferrable, resumable and fills in older indexes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from clipsearch.store import FORMAT_VERSION, StoreReader, migrations
from tests.conftest import Cli, search_json
from tests.serving import Server
from tests.test_migrations import v1_index  # noqa: F401 - the format-1 fixture, for the backfill

pytestmark = pytest.mark.usefixtures("words_on")  # pictures are read here, as in a user's index
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def sign(lines: list[str], size: tuple[int, int] = (900, 500), angle: float = 0, height: int = 70) -> Image.Image:
    """Dark words on a light board: what a shop sign or a receipt's header looks like to the model."""
    font = ImageFont.truetype(str(FONT), height) if FONT.is_file() else ImageFont.load_default(height)
    image = Image.new("RGB", size, (236, 232, 220))
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((size[0] // 12, size[1] // 5 + n * int(height * 1.6)), line, font=font, fill=(25, 25, 30))
    return image.rotate(angle, fillcolor=(236, 232, 220)) if angle else image


def plain(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A picture with no text: a soft gradient of colour."""
    import numpy as np

    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 200 // size[0], y * 180 // size[1], np.full_like(x, 40 + 50 * seed)], axis=-1)
    return Image.fromarray(base.astype("uint8"))


def with_keywords(path: Path) -> None:
    """A photo whose manager wrote XMP keywords, a caption in EXIF and Windows keywords (UTF-16)."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
           b'<rdf:li>Grandmother</rdf:li><rdf:li>Birthday</rdf:li></rdf:Bag></dc:subject>'
           b'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Caf\xc3\xa9 Florian</rdf:li></rdf:Alt></dc:title>'
           b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    exif = Image.Exif()
    exif[0x010E] = "Lakeside picnic"
    exif[0x9C9E] = "zebra crossing".encode("utf-16-le") + b"\0\0"
    plain(3).save(path, quality=90, xmp=xmp, exif=exif)


@pytest.fixture
def words_folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    (photos / "Venice 2019").mkdir(parents=True)
    (photos / "shops").mkdir()
    sign(["ACME HARDWARE", "Open 9-18"]).save(photos / "shops" / "sign.jpg", quality=85)
    sign(["Invoice 4711", "Total: 23.95 EUR"], angle=6).save(photos / "shops" / "receipt.png")
    sign(["BAKERY"], size=(6000, 3500), height=500).save(photos / "shops" / "huge.jpg", quality=80)
    with_keywords(photos / "Venice 2019" / "IMG_2041.jpg")
    plain(1).save(photos / "Venice 2019" / "gondola_at-dusk.jpg")
    plain(2).save(photos / "blank.png")
    return photos


def by_name(hits: list[dict]) -> list[str]:
    return [Path(h["path"]).name for h in hits]


def test_words_in_pictures_in_files_and_in_names_are_found(cli: Cli, index_dir: Path, words_folder: Path) -> None:
    report = cli("index", words_folder, "--model", "demo", "--json").json()
    assert report["added"] == 6 and report["words"]["named"] == 6  # type: ignore[index]
    assert report["words"]["read"] == 6 and report["words"]["with_text"] == 3  # type: ignore[index]
    assert report["words"]["failed"] == 0  # type: ignore[index]

    assert by_name(search_json(cli, "--text", "acme")) == ["sign.jpg"]
    assert by_name(search_json(cli, "--text", "HARDWARE acme")) == ["sign.jpg"]  # any order, any case
    assert by_name(search_json(cli, "--text", "ardwar")) == ["sign.jpg"]  # inside a word
    assert by_name(search_json(cli, "--text", '"Total: 23.95"')) == ["receipt.png"]  # a phrase, exactly
    assert search_json(cli, "--text", '"Total 23.95"') == []  # ... and only exactly
    assert by_name(search_json(cli, "--text", "Open 9")) == ["sign.jpg"]  # a word too short for trigrams
    assert by_name(search_json(cli, "--text", "4711 23")) == ["receipt.png"]
    assert by_name(search_json(cli, "--text", "bakery")) == ["huge.jpg"]  # a 21 MP picture, read at a bounded size
    assert by_name(search_json(cli, "--text", "grandmother")) == ["IMG_2041.jpg"]  # XMP dc:subject
    assert by_name(search_json(cli, "--text", "cafe florian")) == ["IMG_2041.jpg"]  # dc:title, across the accent
    assert by_name(search_json(cli, "--text", "picnic")) == ["IMG_2041.jpg"]  # EXIF ImageDescription
    assert by_name(search_json(cli, "--text", "zebra")) == ["IMG_2041.jpg"]  # XPKeywords
    assert by_name(search_json(cli, "--text", "gondola dusk")) == ["gondola_at-dusk.jpg"]  # the file's name
    assert sorted(by_name(search_json(cli, "--text", "venice"))) == ["IMG_2041.jpg", "gondola_at-dusk.jpg"]  # folder
    assert by_name(search_json(cli, "--text", "venice", "--in", words_folder / "shops")) == []  # filters hold
    assert search_json(cli, "--text", "bakery", "--type", "png") == []

    hit = search_json(cli, "--text", "invoice")[0]
    assert hit["score"] is None and "Invoice 4711" in hit["text"] and "Total: 23.95 EUR" in hit["text"]
    hits = search_json(cli, "a photo", "-k", "10")
    assert {Path(h["path"]).name: h["text"] for h in hits}["blank.png"] == ""  # read: no text
    assert all(isinstance(h["score"], float) for h in hits)

    # a plain search ranks by meaning and words together: the photo whose words hold every word of the query comes
    # first, the rest in the meaning's order (their cosine scores fall)
    fused = search_json(cli, "acme hardware", "-k", "6")
    assert by_name(fused)[0] == "sign.jpg" and len(fused) == 6
    rest = [h["score"] for h in fused[1:]]
    assert rest == sorted(rest, reverse=True)
    assert "sign.jpg" not in by_name(search_json(cli, "acme hardware", "--in", words_folder / "Venice 2019"))
    paged = search_json(cli, "acme hardware", "-k", "3") + search_json(cli, "acme hardware", "-k", "3", "--offset", "3")
    assert by_name(paged) == by_name(fused) and [h["rank"] for h in paged] == [1, 2, 3, 4, 5, 6]
    # with a query, --text keeps only the photos whose words match, ranked by the query
    assert by_name(search_json(cli, "a photo", "--text", "venice")) in (["IMG_2041.jpg", "gondola_at-dusk.jpg"],
                                                                        ["gondola_at-dusk.jpg", "IMG_2041.jpg"])

    for args, message in ((("--text", "  "), "--text needs words to look for"),
                          (("--text", "acme", "--relevant"), "--relevant and --min-score cut by a query's score")):
        result = cli("search", *args)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    info = cli("info", "--json").json()
    assert info["words"] == {"mode": "on", "pictures_read": 6, "pictures_with_text": 3,  # type: ignore[index]
                             "pictures_waiting": 0}


def test_words_later_and_off_are_remembered_and_the_stage_resumes(cli: Cli, index_dir: Path, words_folder: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    report = cli("index", words_folder, "--model", "demo", "--words", "later", "--json").json()
    assert report["words"] == {"named": 6, "read": 0, "with_text": 0, "failed": 0}  # type: ignore[index]
    assert search_json(cli, "--text", "acme") == [] and by_name(search_json(cli, "--text", "zebra")) == ["IMG_2041.jpg"]
    again = cli("index", "--json").json()  # remembered: a plain scheduled run leaves the pictures too
    assert "words" not in again and cli("info", "--json").json()["words"]["pictures_waiting"] == 6  # type: ignore

    # on: the pictures are read in committed blocks; a run stopped after two keeps them, the next reads the rest
    from clipsearch import ocr
    from indexer import words as stage

    monkeypatch.setattr(stage, "PICTURES_BLOCK", 1)
    real, calls = ocr.Reader.read, []

    def stopping(self: ocr.Reader, image: Image.Image) -> ocr.Seen:
        calls.append(image.size)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, image)

    monkeypatch.setattr(ocr.Reader, "read", stopping)
    stopped = cli("index", "--words", "on", "--json")
    assert stopped.exit_code == 130 and stopped.json()["interrupted"] is True  # type: ignore[index]
    assert cli("info", "--json").json()["words"]["pictures_read"] == 2  # type: ignore[index]
    monkeypatch.setattr(ocr.Reader, "read", real)
    rest = cli("index", "--json").json()
    assert rest["words"]["read"] == 4 and rest["model_seconds"] == 0  # type: ignore[index]
    assert by_name(search_json(cli, "--text", "acme")) == ["sign.jpg"]

    # off: what was read is dropped (names and carried words stay); later runs read nothing
    assert "words" not in cli("index", "--words", "off", "--json").json()
    assert search_json(cli, "--text", "acme") == [] and by_name(search_json(cli, "--text", "zebra")) == ["IMG_2041.jpg"]
    assert search_json(cli, "a photo")[0]["text"] is None
    wrong = cli("index", "--words", "sometimes")
    assert wrong.exit_code == 2 and "--words must be one of on, later, off" in wrong.stderr


def test_clipsearch_words_is_the_mode_of_an_index_that_chose_none(cli: Cli, index_dir: Path, words_folder: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_WORDS", "later")
    report = cli("index", words_folder, "--model", "demo", "--json").json()
    assert report["words"]["read"] == 0 and cli("info", "--json").json()["words"]["mode"] == "later"  # type: ignore
    monkeypatch.setenv("CLIPSEARCH_WORDS", "sometimes")
    wrong = cli("index")
    said = "clipsearch: error: $CLIPSEARCH_WORDS must be one of on, later, off, not 'sometimes'\n"
    assert wrong.exit_code == 2 and wrong.stderr == said
    monkeypatch.delenv("CLIPSEARCH_WORDS")  # the default: on
    assert cli("index", "--json").json()["words"]["read"] == 6  # type: ignore[index]


def test_a_picture_the_models_choke_on_costs_its_words_only(cli: Cli, index_dir: Path, words_folder: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer import words as stage

    reader = stage.reader()
    engine = reader._read

    def choking(pixels: object) -> object:
        if getattr(pixels, "shape", (0, 0))[:2] == (500, 900) and not choking.done:  # the first 900x500 sign
            choking.done = True
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad allocation")
        return engine(pixels)

    choking.done = False  # type: ignore[attr-defined]
    monkeypatch.setattr(reader, "_read", choking)
    report = cli("index", words_folder, "--model", "demo", "--json").json()
    assert report["added"] == 6 and report["failed"] == []  # type: ignore[index]
    assert report["words"]["failed"] == 1 and report["words"]["with_text"] == 2  # type: ignore[index]
    assert len(search_json(cli, "a photo", "-k", "10")) == 6  # every photo indexed and found by meaning
    conn = sqlite3.connect(index_dir / "catalog.sqlite")
    hows = sorted(how for (how,) in conn.execute("SELECT how FROM seen_text"))
    conn.close()
    assert hows[0].startswith("failed: RuntimeError: [ONNXRuntimeError]") and set(hows[1:]) <= {"none", "read"}
    assert len(hows) == 6
    assert cli("index", "--json").json().get("words") is None  # not tried again until the photo changes


WORDS_FROM = migrations.FIRST + 1 + next(n for n, step in enumerate(migrations.STEPS)
                                         if step.what.startswith("photos keep the words"))


def test_an_index_from_before_words_gets_them_with_nothing_re_embedded(cli: Cli, index_dir: Path,
                                                                       words_folder: Path) -> None:
    """The backfill: an index written by format 11 (no words) is upgraded in place by its next run, which reads the
    headers, names and pictures of what it holds; no photo is decoded for the model, no vector changes."""
    assert cli("index", words_folder, "--model", "demo", "--json").json()["added"] == 6  # type: ignore[index]
    conn = sqlite3.connect(index_dir / "catalog.sqlite")
    with conn:  # as the code before the words' format left it
        for table in ("words_fts", "file_words", "seen_text"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM meta WHERE key = 'words'")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(WORDS_FROM - 1),))
    conn.close()
    with StoreReader.open(index_dir) as store:
        before, generation = store.vectors.by_path(), store.catalog.generation
        assert search_json(cli, "--text", "acme") == []  # a reader of the old format: no words, no error
    report = cli("index", "--json").json()
    assert report["notes"] == [f"the index was upgraded in place from format {WORDS_FROM - 1} to "  # type: ignore
                               f"{FORMAT_VERSION}; nothing was re-embedded"]
    assert report["model_seconds"] == 0 and report["unchanged"] == 6  # type: ignore[index]
    assert report["words"] == {"named": 6, "read": 6, "with_text": 3, "failed": 0}  # type: ignore[index]
    with StoreReader.open(index_dir) as store:
        after = store.vectors.by_path()
        assert store.catalog.generation == generation and store.catalog.format_version == FORMAT_VERSION
    assert after.keys() == before.keys() and all(after[p].tobytes() == before[p].tobytes() for p in before)
    assert by_name(search_json(cli, "--text", "acme")) == ["sign.jpg"]


def test_a_format_1_index_gets_its_words(cli: Cli, v1_index: tuple[Path, Path]) -> None:  # noqa: F811
    index, photos = v1_index
    report = cli("index", photos, "--index", index, "--words", "later", "--json").json()
    assert report["model_seconds"] == 0 and report["words"]["named"] == 55  # type: ignore[index]
    hits = search_json(cli, "--text", "red star", "--index", index)
    assert sorted(by_name(hits)) == ["red-star-copy.png", "red-star.png"]  # by their names


def test_http_hits_carry_the_text_and_text_searches(cli: Cli, index_dir: Path, words_folder: Path) -> None:
    assert cli("index", words_folder, "--model", "demo").exit_code == 0
    server = Server(index_dir).start()
    try:
        found = server.get("/search?text=" + "%22Total%3A%2023.95%22").json()
        assert by_name(found) == ["receipt.png"] and "Invoice 4711" in found[0]["text"]  # type: ignore[index]
        hits = server.get("/search?q=acme%20hardware&k=6").json()
        assert by_name(hits)[0] == "sign.jpg" and "ACME HARDWARE" in hits[0]["text"]  # type: ignore[index]
        words = server.get(f"/words/{hits[0]['id']}").json()  # type: ignore[index]
        assert words["text"] == hits[0]["text"] and len(words["boxes"]) == 2  # type: ignore[index]
        assert all(0 <= x <= 1 and 0 <= y <= 1 for box in words["boxes"] for x, y in box["box"])  # type: ignore
        wrong = server.get("/search?text=%20")
        assert wrong.status == 400 and "needs words" in json.dumps(wrong.json())
    finally:
        server.stop()


def test_the_viewer_shows_the_text_read_with_its_boxes_over_the_photo(browser: Any, cli: Cli, index_dir: Path,
                                                                      words_folder: Path) -> None:
    assert cli("index", words_folder, "--model", "demo").exit_code == 0
    server = Server(index_dir).start()
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)  # string waits
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.base + "/")
        page.fill("#q", "acme hardware")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelector('#grid .tile .name')?.textContent === 'sign.jpg'")
        page.locator("#grid .tile").first.click()
        page.wait_for_selector("#viewer-text:not([hidden])")
        assert page.inner_text("#viewer-text").splitlines() == ["ACME HARDWARE", "Open 9-18"]
        page.wait_for_function("document.querySelectorAll('#big-boxes polygon').length === 2")
        page.wait_for_function("document.getElementById('big').complete")
        shown = page.locator("#big").bounding_box()  # the element; the picture is fitted inside it (contain)
        scale = min(shown["width"] / 900, shown["height"] / 500)
        left = shown["x"] + (shown["width"] - 900 * scale) / 2
        top = shown["y"] + (shown["height"] - 500 * scale) / 2
        first = page.locator("#big-boxes polygon").first.bounding_box()
        # the first line was drawn at (75, 100) of the 900x500 sign: its box lies there on the screen
        assert abs(first["x"] - (left + 75 * scale)) < 25 * scale and abs(first["y"] - (top + 100 * scale)) < 25 * scale
        page.keyboard.press("Escape")
        page.locator("#grid .tile", has_text="blank.png").click()  # a photo with no text: no line, no box
        page.wait_for_function("document.getElementById('viewer-name').textContent === 'blank.png'")
        page.wait_for_function("document.getElementById('viewer-text').hidden")
        assert page.locator("#big-boxes polygon").count() == 0
        assert not errors, errors
    finally:
        context.close()
        server.stop()
