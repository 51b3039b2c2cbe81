"""The search page in a real headless Chromium (Debian's package, driven by Playwright).

Screenshots and the measured first-result latency are written to test-artifacts/.
Without Chromium or Playwright these tests skip, except under CI, where .ci/run installs
Chromium and a skip would hide a broken page.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, Library

ARTIFACTS = ROOT / "test-artifacts"




@pytest.fixture
def page(browser: Any, library: Library) -> Iterator[Any]:
    # bypass_csp: Playwright evaluates the tests' wait conditions as strings, which the page's CSP (tested in
    # test_server.py) rightly forbids to the page itself
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(30_000)
    page.goto(library.server.base + "/")
    yield page
    context.close()
    assert not errors, errors


def api(library: Library, path: str) -> list[dict[str, Any]]:
    return library.server.get(path).json()  # type: ignore[return-value]


def tile_names(page: Any) -> list[str]:
    return page.locator("#grid .tile .name").all_inner_texts()


def wait_for_results(page: Any, first_name: str | None = None) -> None:
    page.wait_for_function("document.querySelectorAll('#grid .tile').length > 0 && "
                           "!document.getElementById('status').textContent.startsWith('Searching')")
    if first_name:
        page.wait_for_function(f"document.querySelector('#grid .tile .name').textContent === {json.dumps(first_name)}")


def thumbnails_loaded(page: Any, n: int) -> bool:
    return page.evaluate(f"""Array.from(document.querySelectorAll('#grid .tile img')).slice(0, {n})
        .every(img => img.complete && img.naturalWidth > 0)""")


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"))


def test_text_search_viewer_and_more_like_this(page: Any, library: Library) -> None:
    expected = api(library, "/search?q=" + urllib.parse.quote("a red star") + "&k=60")
    assert expected[0]["name"] == "red-star.png"

    page.fill("#q", "a red star")
    page.press("#q", "Enter")
    wait_for_results(page)
    page.wait_for_function("document.body.dataset.firstResultMs !== undefined")
    first_ms = int(page.evaluate("document.body.dataset.firstResultMs"))
    assert tile_names(page)[:60] == [h["name"] for h in expected]
    assert page.locator("#grid .tile").first.get_attribute("data-id") == str(expected[0]["id"])
    page.wait_for_function("Array.from(document.querySelectorAll('#grid .tile img')).slice(0, 10)"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    assert thumbnails_loaded(page, 10)
    assert "a red star" in page.inner_text("#status")
    assert "q=a+red+star" in page.url  # the address bar keeps the search
    screenshot(page, "text-search")

    # a second query, timed the same way: the model is warm
    page.fill("#q", "a blue circle")
    page.press("#q", "Enter")
    wait_for_results(page, "blue-circle.jpg")
    page.wait_for_function("window.clipsearch.timings.length >= 2")
    timings = page.evaluate("window.clipsearch.timings")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "web-latency.json").write_text(json.dumps({"first_result_ms": [first_ms, *timings[1:]]}))
    print(f"first-result latency in the browser: {first_ms} ms (first query), {timings[1]} ms (second)")

    page.go_back()  # back to "a red star"
    wait_for_results(page, "red-star.png")

    # open the best hit: the large image, its path, "more like this"
    page.locator("#grid .tile").first.click()
    page.wait_for_selector("#viewer:not([hidden])")
    page.wait_for_function("document.getElementById('big').complete && document.getElementById('big').naturalWidth > 0")
    assert page.inner_text("#viewer-path") == expected[0]["path"]
    assert page.get_attribute("#big", "src") == f"/file/{expected[0]['id']}"
    screenshot(page, "viewer")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.getElementById('viewer-path').textContent === {json.dumps(expected[1]['path'])}")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"document.getElementById('viewer-path').textContent === {json.dumps(expected[0]['path'])}")

    like = api(library, f"/search?like={expected[0]['id']}&k=60")
    page.click("#like")
    page.wait_for_selector("#viewer", state="hidden")
    wait_for_results(page, like[0]["name"])
    assert "photos like red-star.png" in page.inner_text("#status")
    ids = page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => t.dataset.id)")
    assert ids[:60] == [str(h["id"]) for h in like]
    assert str(expected[0]["id"]) not in ids  # the photo itself is not its own "more like this"
    screenshot(page, "more-like-this")


def test_drop_an_image_to_search(page: Any, library: Library) -> None:
    query = library.root / "others" / "blue-circle.jpg"
    expected: list[dict[str, Any]] = library.server.get("/search?k=60", method="POST", body=query.read_bytes()).json()  # type: ignore[assignment]
    assert expected[0]["name"] == "blue-circle.jpg"
    payload = base64.b64encode(query.read_bytes()).decode()
    page.evaluate("""([payload, name]) => {
        const bytes = Uint8Array.from(atob(payload), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], name, {type: "image/jpeg"}));
        const main = document.querySelector("main");
        main.dispatchEvent(new DragEvent("dragenter", {dataTransfer: data, bubbles: true}));
        main.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", [payload, query.name])
    wait_for_results(page, "blue-circle.jpg")
    assert page.is_visible("#query-image") and page.is_hidden("#drop")
    assert tile_names(page)[:60] == [h["name"] for h in expected]  # type: ignore[index,union-attr]
    assert float(page.locator("#grid .tile .score").first.inner_text()) >= 0.99
    screenshot(page, "dropped-image")


def test_folder_filter_paging_and_keyboard(page: Any, library: Library) -> None:
    reds = str(library.root / "reds")
    page.fill("#folder", reds)
    page.fill("#q", "a star")
    page.press("#q", "Enter")
    wait_for_results(page)
    titles = page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => t.title)")
    assert len(titles) == 6 and all(t.startswith(reds + "/") for t in titles)

    # all 109 photos: the first page holds 60, scrolling brings the rest
    page.fill("#folder", "")
    page.fill("#q", "a green square")
    page.press("#q", "Enter")
    wait_for_results(page, "green-square.jpg")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length >= 60")
    page.mouse.wheel(0, 20_000)
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 109")
    expected = api(library, "/search?q=" + urllib.parse.quote("a green square") + "&k=200")
    assert page.eval_on_selector_all("#grid .tile", "t => t.map(x => x.dataset.id)") == [str(h["id"]) for h in expected]
    page.wait_for_function("document.getElementById('status').textContent.startsWith('109 photos')")

    # keyboard: "/" focuses the box, arrows walk the grid, Enter opens, Esc closes and returns focus
    page.keyboard.press("Escape")  # leave the search box
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    page.keyboard.press("ArrowRight")  # no tile focused yet: the first
    assert page.evaluate("document.activeElement.dataset.index") == "0"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    columns = page.evaluate("""(() => { const t = document.querySelectorAll('#grid .tile');
        return Array.from(t).filter(x => x.getBoundingClientRect().top === t[0].getBoundingClientRect().top).length; })()""")
    assert page.evaluate("document.activeElement.dataset.index") == str(1 + columns)
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer:not([hidden])")
    assert page.inner_text("#viewer-path") == expected[1 + columns]["path"]
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.evaluate("document.activeElement.dataset.index") == str(1 + columns)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    screenshot(page, "keyboard")


def test_page_works_under_its_own_csp(browser: Any, library: Library) -> None:
    """No bypass here: the page's own script must run under its Content-Security-Policy."""
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(library.server.base + "/?q=" + urllib.parse.quote("a red star"))
        page.wait_for_selector("#grid .tile img", timeout=30_000)
        assert page.locator("#grid .tile .name").first.inner_text() == "red-star.png"
    finally:
        context.close()
    assert not problems, problems


def test_a_photos_tags_show_in_the_viewer_and_a_click_searches_them(page: Any, library: Library) -> None:
    expected = api(library, "/search?q=" + urllib.parse.quote("a red star") + "&k=60")
    tagged = next(h for h in expected if h["tags"])  # the demo model tags with the built-in vocabulary: some tags
    page.fill("#q", "a red star")
    page.press("#q", "Enter")
    wait_for_results(page)
    page.locator(f'#grid .tile[data-id="{tagged["id"]}"]').click()
    page.wait_for_selector("#viewer-tags:not([hidden])")
    assert page.locator("#viewer-tags .tag").all_inner_texts() == tagged["tags"]
    tag = tagged["tags"][0]
    want = api(library, f"/search?q={urllib.parse.quote(tag)}&tag={urllib.parse.quote(tag)}&k=60")
    page.locator("#viewer-tags .tag").first.click()
    page.wait_for_selector("#viewer", state="hidden")
    wait_for_results(page, want[0]["name"])
    assert f"tagged “{tag}”" in page.inner_text("#status")
    ids = page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => t.dataset.id)")
    assert ids == [str(h["id"]) for h in want] and all(tag in h["tags"] for h in want)
    assert "tag=" in page.url  # reload and Back keep the tag


def test_browse_by_date_filters_and_details_on_the_page(page: Any, library: Library) -> None:
    expected = api(library, "/search?sort=-date&k=60")
    page.select_option("#sort", "-date")  # no words: the page browses every photo, newest first
    wait_for_results(page)
    ids = page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => t.dataset.id)")
    assert ids[:60] == [str(h["id"]) for h in expected]
    assert "by date" in page.inner_text("#status")
    page.locator("#grid .tile").first.click()
    page.wait_for_selector("#viewer:not([hidden])")
    details = page.inner_text("#viewer-details")
    assert f"{expected[0]['width']}×{expected[0]['height']}" in details and "(file date)" in details
    page.keyboard.press("Escape")
    page.fill("#after", "2999-01-01")  # a filter that keeps nothing: searched again at once
    page.dispatch_event("#after", "change")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 0 && "
                           "!document.getElementById('status').textContent.startsWith('Searching')")
    assert api(library, "/search?sort=-date&after=2999-01-01") == []
    assert api(library, "/cameras") == []  # the sample has no EXIF cameras: the choice offers only "Any camera"
    assert page.locator("#camera option").count() == 1


def test_more_like_this_plus_words(page: Any, library: Library) -> None:
    """Query arithmetic on the page: a photo's stored vector plus the words typed beside "More like this"."""
    start = api(library, "/search?q=" + urllib.parse.quote("a red star") + "&k=1")[0]
    want = api(library, f"/search?q=like:{start['id']}&q=" + urllib.parse.quote("a blue diamond") + "&k=60")
    page.fill("#q", "a red star")
    page.press("#q", "Enter")
    wait_for_results(page, start["name"])
    page.locator("#grid .tile").first.click()
    page.wait_for_selector("#viewer:not([hidden])")
    page.fill("#like-words", "a blue diamond")  # typed letters ("m") stay in the box, not shortcuts
    page.press("#like-words", "Enter")
    page.wait_for_selector("#viewer", state="hidden")
    wait_for_results(page, want[0]["name"])
    assert "like red-star.png + “a blue diamond”" in page.inner_text("#status")
    ids = page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => t.dataset.id)")
    assert ids == [str(h["id"]) for h in want] and str(start["id"]) not in ids


def _search_requests(page: Any) -> int:
    return page.evaluate("window.__searches")


def _count_searches(page: Any) -> None:
    """Count the page's /search requests from here on (window.__searches)."""
    page.evaluate("""() => { window.__searches = 0; const real = window.fetch;
        window.fetch = (url, ...rest) => { if (String(url).startsWith('/search')) window.__searches += 1;
                                           return real(url, ...rest); }; }""")


def _settled(page: Any) -> None:
    """Two frames and a task later: an IntersectionObserver or requestAnimationFrame that would load has run."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done))))")


def test_the_duplicates_view_hides_the_search_and_stops_its_paging(page: Any, library: Library) -> None:
    """#grid kept display:grid over its hidden attribute: the search's tiles showed under the groups, scrolling loaded
    more of them, and the status line still spoke of the search."""
    page.fill("#q", "a green square")
    page.press("#q", "Enter")
    wait_for_results(page, "green-square.jpg")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('60+ photos')")
    _count_searches(page)
    page.click("#show-duplicates")
    page.wait_for_function("document.querySelectorAll('#dup-groups .dup-group').length > 0")
    assert page.is_hidden("#grid") and page.locator("#grid").bounding_box() is None
    assert page.inner_text("#status") == ""
    assert "view=duplicates" in page.url and "q=a+green+square" in page.url
    page.mouse.wheel(0, 20_000)
    _settled(page)
    assert _search_requests(page) == 0 and page.locator("#grid .tile").count() == 60
    screenshot(page, "duplicates-view")

    page.click("#hide-duplicates")  # back: the search as it was, its paging going on
    assert page.is_visible("#grid") and "view=" not in page.url
    page.wait_for_function("document.getElementById('status').textContent.includes('a green square')")
    page.mouse.wheel(0, 20_000)
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 109")
    page.go_back()  # Back: the Duplicates view again
    page.wait_for_selector("#duplicates:not([hidden])")
    assert page.is_hidden("#grid") and page.inner_text("#status") == ""


def test_every_control_is_kept_in_the_address(page: Any, library: Library) -> None:
    """After choosing a camera the address stayed ?q=...; a "Newest" browse left it at /: a reload lost them."""
    page.select_option("#sort", "-date")
    wait_for_results(page)
    assert urllib.parse.urlsplit(page.url).query == "sort=-date"
    page.reload()
    wait_for_results(page)
    assert page.input_value("#sort") == "-date" and "by date" in page.inner_text("#status")
    browse = api(library, "/search?sort=-date&k=60")
    assert page.eval_on_selector_all("#grid .tile", "t => t.map(x => x.dataset.id)") == [str(h["id"]) for h in browse]

    reds = str(library.root / "reds")
    page.fill("#folder", reds)
    page.fill("#q", "a star")
    page.press("#q", "Enter")
    wait_for_results(page)
    page.fill("#after", "2000-01-01")
    page.dispatch_event("#after", "change")
    page.fill("#before", "2999-12-31")
    page.dispatch_event("#before", "change")
    page.check("#relevant")
    wait_for_results(page)
    kept = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))
    assert kept == {"q": "a star", "in": reds, "after": "2000-01-01", "before": "2999-12-31", "sort": "-date",
                    "relevant": "1"}
    want = api(library, "/search?" + urllib.parse.urlencode({**kept, "k": 60}))
    page.reload()
    wait_for_results(page)
    assert (page.input_value("#q"), page.input_value("#folder"), page.input_value("#after"),
            page.input_value("#before"), page.input_value("#sort"), page.is_checked("#relevant")) == (
        "a star", reds, "2000-01-01", "2999-12-31", "-date", True)
    assert page.eval_on_selector_all("#grid .tile", "t => t.map(x => x.dataset.id)") == [str(h["id"]) for h in want]

    # the sample has no cameras: one is offered as /cameras would, and chosen
    page.evaluate("""() => { const o = document.createElement('option'); o.value = 'Pixel 6';
                             document.getElementById('camera').append(o); }""")
    page.select_option("#camera", "Pixel 6")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('No photos')")
    assert "camera=Pixel+6" in page.url
    page.reload()  # restored though /cameras does not offer it
    page.wait_for_function("document.getElementById('status').textContent.startsWith('No photos')")
    assert page.input_value("#camera") == "Pixel 6" and page.locator("#grid .tile").count() == 0
    page.go_back()  # the search before the camera was chosen
    wait_for_results(page)
    assert page.input_value("#camera") == "" and page.is_checked("#relevant")

    page.click("#show-duplicates")
    page.select_option("#dup-level", "similar")
    page.wait_for_function("location.search.includes('level=similar')")
    page.reload()  # the view and its level are kept too
    page.wait_for_selector("#duplicates:not([hidden])")
    assert page.input_value("#dup-level") == "similar" and page.is_hidden("#grid")
