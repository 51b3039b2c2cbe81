// The People view: everyone whose face was found (GET /people), each as their largest face (GET /face/ID) with
// their name or number and how many photos show them; a click lists their photos (person=ID, by date). Names are
// given with `clipsearch people name ID NAME` (the server only reads the index).
"use strict";

(() => {
  const view = document.getElementById("people");
  const list = document.getElementById("people-list");
  const summary = document.getElementById("people-summary");
  const results = [document.getElementById("grid"), document.getElementById("sentinel"), document.getElementById("empty")];
  const token = new URLSearchParams(location.search).get("token");
  const hideOthers = window.clipsearch.leaveView;  // the Duplicates view (duplicates.js comes first)

  function url(path) {
    return token ? `${path}?token=${encodeURIComponent(token)}` : path;
  }

  function person(p) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "person";
    button.title = `Photos of ${p.name || "person " + p.id}`;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = url(`/face/${p.face}`);
    img.alt = p.name || `person ${p.id}`;
    const name = document.createElement("strong");
    name.textContent = p.name || `person ${p.id}`;
    const count = document.createElement("span");
    count.textContent = `${p.photos} photo${p.photos === 1 ? "" : "s"}`;
    button.append(img, name, count);
    button.addEventListener("click", () => window.clipsearch.showPerson(p.id, p.name || `person ${p.id}`));
    li.append(button);
    return li;
  }

  async function load() {
    summary.textContent = "Looking for people…";
    list.replaceChildren();
    const response = await fetch(url("/people"));
    const body = await response.json();
    if (!response.ok) {
      summary.textContent = body.error || `error ${response.status}`;
      return;
    }
    summary.textContent = body.people.length
      ? `${body.people.length} people; name them with “clipsearch people name ID NAME”`
      : body.faces === "on" ? "No people yet" : "Faces are not looked for: “clipsearch index --faces on” finds them";
    body.people.forEach((p) => list.append(person(p)));
  }

  let before = [];

  function show(on, push = true) {
    if (on === !view.hidden) return;
    if (on && hideOthers) hideOthers();
    view.hidden = !on;
    if (on) {
      document.body.dataset.view = "people";
      before = results.map((el) => el.hidden);
      results.forEach((el) => { el.hidden = true; });
      load();
    } else {
      if (document.body.dataset.view === "people") delete document.body.dataset.view;
      results.forEach((el, i) => { el.hidden = before[i]; });
    }
    window.clipsearch.viewChanged();
    if (push) window.clipsearch.remember();
  }

  document.getElementById("show-people").addEventListener("click", () => show(true));
  document.getElementById("show-duplicates").addEventListener("click", () => show(false, false), true);  // first
  document.getElementById("hide-people").addEventListener("click", () => show(false));
  window.addEventListener("popstate", () => show(new URLSearchParams(location.search).get("view") === "people", false));
  window.clipsearch.leaveView = () => { show(false, false); if (hideOthers) hideOthers(); };
  show(new URLSearchParams(location.search).get("view") === "people", false);
})();
