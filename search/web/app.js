// The clipsearch search page: one query at a time (words, a dropped photo, or "more like this"),
// results paged in as the grid scrolls. Talks only to this server's JSON API; no dependencies.
"use strict";

const PAGE = 60;
const $ = (id) => document.getElementById(id);
const form = $("search"), q = $("q"), folder = $("folder"), statusLine = $("status"), grid = $("grid");
const bigVideo = $("big-video");
const viewer = $("viewer"), big = $("big"), dropZone = $("drop"), queryImage = $("query-image");

// What is being searched: {kind: "text", q} | {kind: "like", id, name} | {kind: "image", blob, name},
// each with an optional tag (only photos with that tag: a click on a tag in the viewer) and person (only photos of
// them: a click on a person in the viewer or the People view; {kind: "browse", person} lists their photos)
let query = null;
let hits = [];
let done = true;
let loading = null;   // the in-flight page request, if any
let serial = 0;       // bumps with every new query, so a late answer to an old one is dropped
let current = -1;     // index in hits of the photo open in the viewer
let started = 0;

// From Enter to the first thumbnail on screen, and to the whole first page of thumbnails (ms):
// read by the browser tests and bench/web_latency.py.
// ``remember`` and ``viewChanged`` are for the other views (duplicates.js): the address keeps them too.
window.clipsearch = { timings: [], pageTimings: [], remember: () => remember(), viewChanged: () => viewChanged() };

// Back to the search view: its status line again, and its paging where it stopped.
function viewChanged() {
  showStatus();
  if (!document.body.dataset.view && !done) requestAnimationFrame(fillScreen);
}

// The status line speaks for the search view; while another view (Duplicates) is open it stays empty, and what
// the search had to say comes back with it.
let status = { text: "", isError: false };

function setStatus(text, isError = false) {
  status = { text, isError };
  showStatus();
}

function showStatus() {
  const searching = !document.body.dataset.view;
  statusLine.textContent = searching ? status.text : "";
  statusLine.classList.toggle("error", searching && status.isError);
}

// The filters beside the search box, as the API's parameters (the CLI's options).
const FILTERS = ["after", "before", "camera", "sort"];

function params(extra) {
  const p = new URLSearchParams(extra);
  const within = folder.value.trim();
  if (within) p.set("in", within);
  if (query && query.tag) p.set("tag", query.tag);
  if (query && query.person) p.set("person", String(query.person));
  for (const name of FILTERS) {
    const value = $(name).value;
    if (value && value !== "relevance") p.set(name, value);
  }
  if ($("relevant").checked) p.set("relevant", "1");
  return p;
}

async function fetchPage(offset) {
  const base = { k: String(PAGE), offset: String(offset) };
  let response;
  if (query.kind === "browse") {
    response = await fetch("/search?" + params(base));
  } else if (query.kind === "image") {
    response = await fetch("/search?" + params(base), {
      method: "POST", body: query.blob, headers: { "Content-Type": query.blob.type || "application/octet-stream" },
    });
  } else {
    const p = params(base);
    if (query.kind === "like" && query.plus) { p.append("q", `like:${query.id}`); p.append("q", query.plus); }
    else if (query.kind === "like") p.set("like", String(query.id));
    else p.set("q", query.q);
    response = await fetch("/search?" + p);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.error;
    throw new Error(typeof detail === "string" ? detail : `the server answered ${response.status}`);
  }
  return body;
}

function describe() {
  const what = query.kind === "text" ? `for “${query.q}”` : query.kind === "browse" ? "by date"
    : `like ${query.name}` + (query.plus ? ` + “${query.plus}”` : "");
  const who = query.person ? `${what === "by date" ? "" : what + ", "}with ${query.personName || "person " + query.person}` : what;
  return query.tag ? `${who}, tagged “${query.tag}”` : who;
}

function tile(hit, index) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = String(index);
  button.dataset.id = String(hit.id);
  button.title = hit.path;
  const img = document.createElement("img");
  img.loading = index < PAGE ? "eager" : "lazy";
  if (index < 6) img.fetchPriority = "high";  // the first row first
  img.alt = hit.name;
  img.src = thumbUrl(hit);
  if (index === 0) {
    const mine = serial;
    img.addEventListener("load", () => {
      if (mine !== serial) return;
      const ms = Math.round(performance.now() - started);
      window.clipsearch.timings.push(ms);
      document.body.dataset.firstResultMs = String(ms);
    }, { once: true });
  }
  const caption = document.createElement("span");
  caption.className = "caption";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = hit.name;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score === null ? (hit.taken || "").slice(0, 10) : hit.score.toFixed(3);  // browsing: the date
  caption.append(name, score);
  button.append(img, caption);
  button.addEventListener("click", () => openViewer(index));
  li.append(button);
  return li;
}

async function loadMore() {
  if (done || loading || !query || document.body.dataset.view) return;  // another view: the grid is not on screen
  const mine = serial;
  const offset = hits.length;
  loading = fetchPage(offset);
  try {
    const page = await loading;
    if (mine !== serial) return;
    const fragment = document.createDocumentFragment();
    page.forEach((hit, i) => { hits.push(hit); fragment.append(tile(hit, offset + i)); });
    grid.append(fragment);
    if (offset === 0) timePage(mine);
    done = page.length < PAGE;
    const ms = Math.round(performance.now() - started);
    if (hits.length === 0) setStatus(`No photos ${describe()}${folder.value.trim() ? " in " + folder.value.trim() : ""}.`);
    else setStatus(`${hits.length}${done ? "" : "+"} photos ${describe()} · ${offset === 0 ? ms + " ms" : "scroll for more"}`);
    if (!done) requestAnimationFrame(fillScreen);
  } catch (err) {
    if (mine === serial) { setStatus(err.message, true); done = true; }
  } finally {
    if (mine === serial) loading = null;
  }
}

function timePage(mine) {
  const imgs = Array.from(grid.querySelectorAll("img"));
  let left = imgs.length;
  const one = () => {
    left -= 1;
    if (left === 0 && mine === serial) window.clipsearch.pageTimings.push(Math.round(performance.now() - started));
  };
  imgs.forEach((img) => {
    if (img.complete) one();
    else { img.addEventListener("load", one, { once: true }); img.addEventListener("error", one, { once: true }); }
  });
}

// Keep loading while the sentinel is on screen (a tall window may show more than one page).
function fillScreen() {
  const rect = $("sentinel").getBoundingClientRect();
  if (rect.top < window.innerHeight + 400) loadMore();
}

function run(newQuery, push = true) {
  if (push && document.body.dataset.view && window.clipsearch.leaveView) window.clipsearch.leaveView();
  serial += 1;
  loading = null;
  query = newQuery;
  hits = [];
  done = false;
  grid.replaceChildren();
  closeViewer();
  $("empty").hidden = true;
  queryImage.hidden = query.kind !== "image";
  if (query.kind === "image") {
    const img = queryImage.querySelector("img");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(query.blob);
  }
  started = performance.now();
  setStatus("Searching…");
  if (push) remember();
  window.scrollTo(0, 0);
  return loadMore();
}

// The address bar keeps the search and every control beside it (folder, dates, camera, order, relevant only) and
// the view, so reload, back and links work. A search by a dropped photo cannot be kept: its filters and view are.
function address() {
  const p = params({});
  if (query && query.kind === "text") p.set("q", query.q);
  else if (query && query.kind === "like") {
    p.set("like", String(query.id));
    p.set("name", query.name);
    if (query.plus) p.set("plus", query.plus);
  }
  if (document.body.dataset.view) p.set("view", document.body.dataset.view);
  if (document.body.dataset.view && $("dup-level").value !== "copy") p.set("level", $("dup-level").value);
  const token = new URLSearchParams(location.search).get("token");
  if (token) p.set("token", token);
  return p.toString() ? "?" + p : location.pathname;
}

function remember() {
  const next = address();
  if (next !== location.search && !(next === location.pathname && !location.search)) history.pushState(null, "", next);
}

// A camera in the address may not be among the choices yet (they come from /cameras) or at all (none left).
function chooseCamera(name) {
  const select = $("camera");
  if (name && !Array.from(select.options).some((o) => o.value === name)) {
    const o = document.createElement("option");
    o.value = name;
    o.textContent = name;
    select.append(o);
  }
  select.value = name;
}

function restore() {
  const p = new URLSearchParams(location.search);
  folder.value = p.get("in") || "";
  $("after").value = p.get("after") || "";
  $("before").value = p.get("before") || "";
  chooseCamera(p.get("camera") || "");
  $("sort").value = ["date", "-date"].includes(p.get("sort")) ? p.get("sort") : "relevance";
  $("relevant").checked = p.get("relevant") === "1";
  const tag = p.get("tag") || undefined;
  const person = p.get("person") || undefined;
  q.value = p.get("q") || "";
  if (p.get("q")) run({ kind: "text", q: p.get("q"), tag, person }, false);
  else if (p.get("like") && /^[0-9]+$/.test(p.get("like"))) {
    const like = { kind: "like", id: Number(p.get("like")), name: p.get("name") || "photo " + p.get("like"), tag };
    run(p.get("plus") ? { ...like, plus: p.get("plus") } : like, false);
  } else if ($("sort").value !== "relevance" || person) run({ kind: "browse", tag, person }, false);
  else { query = null; hits = []; grid.replaceChildren(); setStatus(""); $("empty").hidden = false; }
}

function searchByImage(file) {
  if (!file || !(file.type || "").startsWith("image/") && !/\.(heic|heif|avif|tiff?)$/i.test(file.name || "")) {
    setStatus("That is not an image file.", true);
    return;
  }
  q.value = "";
  return run({ kind: "image", blob: file, name: file.name || "the pasted image" });
}

// ---- the viewer -------------------------------------------------------------------------------

// A video's tile is its best moment's frame (``t``, seconds); a photo's is the photo.
function thumbUrl(hit) {
  return hit.t === undefined || hit.t === null ? `/thumb/${hit.id}` : `/thumb/${hit.id}?t=${hit.t}`;
}

function isVideo(hit) { return hit.t !== undefined && hit.t !== null; }

// A video plays from its best moment: the server answers the player's range requests (206), so it seeks there.
function showVideo(hit) {
  big.hidden = true;
  big.removeAttribute("src");
  bigVideo.hidden = false;
  bigVideo.src = `/file/${hit.id}#t=${hit.t}`;
  bigVideo.addEventListener("loadedmetadata", () => { bigVideo.currentTime = hit.t; bigVideo.play().catch(() => {}); },
                            { once: true });
  const holder = $("viewer-moments");
  holder.replaceChildren(...(hit.moments || []).map((moment) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "moment";
    button.textContent = `${moment.t.toFixed(1)} s`;
    button.title = `Play from ${moment.t.toFixed(1)} s (score ${moment.score.toFixed(3)})`;
    button.addEventListener("click", () => { bigVideo.currentTime = moment.t; bigVideo.play().catch(() => {}); });
    return button;
  }));
  holder.hidden = !(hit.moments || []).length;
}

function hideVideo() {
  bigVideo.pause();
  bigVideo.removeAttribute("src");
  bigVideo.load();
  bigVideo.hidden = true;
  $("viewer-moments").hidden = true;
  big.hidden = false;
}

function openViewer(index) {
  if (index < 0 || index >= hits.length) return;
  current = index;
  const hit = hits[index];
  if (isVideo(hit)) {
    showVideo(hit);
  } else {
    if (!bigVideo.hidden) hideVideo();
    big.src = `/file/${hit.id}`;
  }
  big.alt = hit.name;
  $("viewer-name").textContent = hit.name;
  $("viewer-path").textContent = hit.path;
  $("viewer-meta").textContent = `#${hit.rank}` + (hit.score === null ? "" : ` · score ${hit.score.toFixed(3)}`);
  $("viewer-details").textContent = details(hit);
  showTags(hit.tags || []);
  showWords(hit);
  showPeople(hit.people || []);
  $("open").href = `/file/${hit.id}`;
  $("prev").disabled = index === 0;
  $("next").disabled = index === hits.length - 1 && done;
  viewer.hidden = false;
  $("like").focus();
  if (index >= hits.length - 3) loadMore();
}

// What the photo's header says: when (and from where the date comes), camera, lens, size, place.
function details(hit) {
  const parts = [];
  if (hit.taken) parts.push(hit.taken.replace("T", " ").slice(0, 16) + (hit.taken_from === "file mtime" ? " (file date)" : ""));
  if (hit.camera) parts.push(hit.camera + (hit.lens ? ` · ${hit.lens}` : ""));
  if (hit.width && hit.height) parts.push(`${hit.width}×${hit.height}`);
  if (hit.size) parts.push(hit.size >= 1e6 ? `${(hit.size / 1e6).toFixed(1)} MB` : `${Math.round(hit.size / 1e3)} kB`);
  if (hit.lat !== null && hit.lat !== undefined) parts.push(`${hit.lat.toFixed(4)}, ${hit.lon.toFixed(4)}`);
  return parts.join(" · ");
}

// A photo's tags as buttons: a click searches the photos with that tag, by the tag's words.
function showTags(tags) {
  const holder = $("viewer-tags");
  holder.replaceChildren(...tags.map((tag) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tag";
    button.textContent = tag;
    button.title = `Photos tagged “${tag}”`;
    button.addEventListener("click", () => { q.value = tag; run({ kind: "text", q: tag, tag }); });
    return button;
  }));
  holder.hidden = tags.length === 0;
}

// The text read in the photo under it, and each line's box over it. The boxes' corners are fractions of the upright
// picture; an SVG whose viewBox is the picture's size, centred and fitted as the <img> (object-fit: contain), lies
// exactly over the picture shown.
function showWords(hit) {
  const text = $("viewer-text"), boxes = $("big-boxes");
  text.textContent = hit.text || "";
  text.hidden = !hit.text;
  boxes.replaceChildren();
  if (!hit.text || !hit.width || !hit.height) return;
  boxes.setAttribute("viewBox", `0 0 ${hit.width} ${hit.height}`);
  boxes.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const id = hit.id;
  fetch(`/words/${id}`).then((r) => (r.ok ? r.json() : null)).then((words) => {
    if (!words || hits[current] === undefined || hits[current].id !== id) return;  // another photo is open by now
    // a video's lines were read in frames at their moments (line.t): no box is drawn over the video as it plays
    boxes.replaceChildren(...words.boxes.filter((line) => line.t === undefined).map((line) => {
      const shape = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
      shape.setAttribute("points", line.box.map(([x, y]) => `${x * hit.width},${y * hit.height}`).join(" "));
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = line.text;
      shape.appendChild(title);
      return shape;
    }));
  });
}

// Who is in the photo, as buttons: a click lists that person's photos.
function showPeople(people) {
  const holder = $("viewer-people");
  holder.replaceChildren(...people.map((p) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tag";
    button.textContent = p.name || `person ${p.person}`;
    button.title = `Photos of ${button.textContent}`;
    button.addEventListener("click", () => showPerson(p.person, button.textContent));
    return button;
  }));
  holder.hidden = people.length === 0;
}

// Every photo of a person, by date (the People view calls it too).
function showPerson(id, name) {
  q.value = "";
  return run({ kind: "browse", person: id, personName: name });
}
window.clipsearch.showPerson = showPerson;

function closeViewer() {
  if (viewer.hidden) return;
  viewer.hidden = true;
  big.removeAttribute("src");
  $("big-boxes").replaceChildren();
  if (!bigVideo.hidden) hideVideo();
  const tileButton = grid.querySelector(`.tile[data-index="${current}"]`);
  if (tileButton) tileButton.focus();
}

// "More like this", or with words in the box beside it: the photo's vector plus the words' (query arithmetic).
function moreLikeThis() {
  const hit = hits[current];
  if (!hit) return;
  q.value = "";
  const plus = $("like-words").value.trim();
  $("like-words").value = "";
  run(plus ? { kind: "like", id: hit.id, name: hit.name, plus } : { kind: "like", id: hit.id, name: hit.name });
}

// ---- keyboard -----------------------------------------------------------------------------------

function columns() {
  const tiles = grid.querySelectorAll(".tile");
  if (tiles.length < 2) return 1;
  const top = tiles[0].getBoundingClientRect().top;
  let n = 0;
  for (const t of tiles) { if (t.getBoundingClientRect().top !== top) break; n += 1; }
  return Math.max(1, n);
}

function moveFocus(key) {
  const focused = document.activeElement;
  let index = focused && focused.classList.contains("tile") ? Number(focused.dataset.index) : -1;
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns(), ArrowDown: columns() }[key];
  index = index < 0 ? 0 : Math.min(Math.max(index + step, 0), hits.length - 1);
  const target = grid.querySelector(`.tile[data-index="${index}"]`);
  if (target) { target.focus(); target.scrollIntoView({ block: "nearest" }); }
  if (index >= hits.length - columns()) loadMore();
}

document.addEventListener("keydown", (event) => {
  const typing = event.target instanceof HTMLInputElement;
  if (!viewer.hidden) {
    if (typing && event.key !== "Escape") return;  // words for "more like this": keys are letters there
    if (event.key === "Escape") { event.preventDefault(); closeViewer(); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); openViewer(current - 1); }
    else if (event.key === "ArrowRight") { event.preventDefault(); openViewer(current + 1); }
    else if (event.key === "m") { event.preventDefault(); moreLikeThis(); }
    return;
  }
  if (event.key === "/" && !typing) { event.preventDefault(); q.focus(); q.select(); return; }
  if (event.key === "Escape" && typing) { event.target.blur(); return; }
  if (!typing && event.key.startsWith("Arrow") && hits.length) { event.preventDefault(); moveFocus(event.key); }
});

// ---- wiring -------------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const words = q.value.trim();
  if (words) run({ kind: "text", q: words });
  else if (query && query.kind !== "text" && query.kind !== "browse") run(query);  // new filters for the same photo
  else if ($("sort").value !== "relevance") run({ kind: "browse" });  // no words: browse by date under the filters
});
$("file").addEventListener("change", (event) => { searchByImage(event.target.files[0]); event.target.value = ""; });
$("clear-image").addEventListener("click", () => { history.pushState(null, "", "/"); restore(); q.focus(); });
$("close").addEventListener("click", closeViewer);
$("prev").addEventListener("click", () => openViewer(current - 1));
$("next").addEventListener("click", () => openViewer(current + 1));
$("like").addEventListener("click", moreLikeThis);
$("like-words").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); event.stopPropagation(); moreLikeThis(); }
});
viewer.addEventListener("click", (event) => { if (event.target === viewer) closeViewer(); });
window.addEventListener("popstate", restore);

let dragDepth = 0;
const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
window.addEventListener("dragenter", (event) => { if (carriesFiles(event)) { dragDepth += 1; dropZone.hidden = false; } });
window.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) dropZone.hidden = true; });
window.addEventListener("dragover", (event) => { if (carriesFiles(event)) event.preventDefault(); });
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  dropZone.hidden = true;
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) searchByImage(file);
});
window.addEventListener("paste", (event) => {
  const file = Array.from((event.clipboardData && event.clipboardData.files) || []).find((f) => f.type.startsWith("image/"));
  if (file) { event.preventDefault(); searchByImage(file); }
});

new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); }, { rootMargin: "400px" })
  .observe($("sentinel"));

// A change of filter or order searches again at once (what is being searched stays).
for (const name of [...FILTERS, "relevant"]) {
  $(name).addEventListener("change", () => {
    if (query) run(query);
    else if ($("sort").value !== "relevance") run({ kind: "browse" });
  });
}

fetch("/cameras").then((r) => (r.ok ? r.json() : [])).then((cameras) => {
  for (const { camera, photos } of cameras) {
    const o = Array.from($("camera").options).find((x) => x.value === camera) || document.createElement("option");
    o.value = camera;
    o.textContent = `${camera} (${photos.toLocaleString()})`;
    if (!o.parentNode) $("camera").append(o);
  }
}).catch(() => {});

fetch("/info").then((r) => (r.ok ? r.json() : null)).then((info) => {
  if (!info) return;
  const list = $("folders");
  for (const root of info.roots || []) { const o = document.createElement("option"); o.value = root; list.append(o); }
  document.title = `clipsearch · ${info.images.toLocaleString()} photos`;
  if (!query) setStatus(`${info.images.toLocaleString()} photos indexed with ${info.model}.`);
}).catch(() => {});

restore();
