// The Duplicates view: groups of copies (and similar shots) from GET /duplicates, thumbnails side by side with
// size, dimensions and date under each, the suggested keeper marked. Nothing is deleted from here: each photo
// opens in a new tab, and `clipsearch duplicates --paths-only` gives the list to act on.
"use strict";

(() => {
  const view = document.getElementById("duplicates");
  const groupsList = document.getElementById("dup-groups");
  const summary = document.getElementById("dup-summary");
  const level = document.getElementById("dup-level");
  const results = [document.getElementById("grid"), document.getElementById("sentinel"), document.getElementById("empty")];
  const token = new URLSearchParams(location.search).get("token");

  function url(path, params) {
    const p = new URLSearchParams(params || {});
    if (token) p.set("token", token);
    const query = p.toString();
    return query ? `${path}?${query}` : path;
  }

  function megabytes(n) {
    return n >= 1e5 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`;
  }

  function member(m) {
    const li = document.createElement("li");
    li.className = "dup-member" + (m.keep ? " keep" : "");
    const link = document.createElement("a");
    link.href = url(`/file/${m.id}`);
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = url(`/thumb/${m.id}`);
    img.alt = m.path;
    link.append(img);
    const facts = document.createElement("div");
    const badge = m.keep ? '<span class="badge">keep</span> · ' : `${m.score.toFixed(3)} · `;
    facts.innerHTML = badge;
    facts.append(`${m.width}×${m.height} · ${megabytes(m.size)} · ${(m.taken || "").slice(0, 10)}`);
    const name = document.createElement("a");
    name.href = link.href;
    name.target = "_blank";
    name.rel = "noopener";
    name.textContent = m.path.split("/").pop();
    name.title = m.path;
    li.append(link, facts, name);
    return li;
  }

  function group(g) {
    const li = document.createElement("li");
    li.className = "dup-group";
    const title = document.createElement("h3");
    title.textContent = `${g.level === "similar" ? "Similar shots" : g.level === "identical" ? "Identical files" : "Copies"}: ${g.members.length} photos `;
    const why = document.createElement("span");
    why.textContent = `— keep ${g.keep.split("/").pop()}: ${g.reason}`;
    title.append(why);
    const members = document.createElement("ol");
    members.className = "dup-members";
    members.style.listStyle = "none";
    members.style.padding = "0";
    g.members.forEach((m) => members.append(member(m)));
    li.append(title, members);
    return li;
  }

  async function load() {
    summary.textContent = "Looking for copies…";
    groupsList.replaceChildren();
    const folder = document.getElementById("folder").value.trim();
    const response = await fetch(url("/duplicates", folder ? { level: level.value, in: folder } : { level: level.value }));
    const body = await response.json();
    if (!response.ok) {
      summary.textContent = body.error || `error ${response.status}`;
      return;
    }
    const copies = body.filter((g) => g.level !== "similar").reduce((n, g) => n + g.members.length - 1, 0);
    summary.textContent = body.length ? `${body.length} groups; ${copies} copies could go` : "No copies found";
    body.forEach((g) => groupsList.append(group(g)));
  }

  let before = [];  // the search view's elements' hidden states, restored on the way back

  // The Duplicates view over the search's (which stays as it was underneath, its paging stopped): kept in the
  // address as view=duplicates (and level), so reload and Back come back to it.
  function show(on, push = true) {
    if (on === !view.hidden) return;
    view.hidden = !on;
    if (on) {
      document.body.dataset.view = "duplicates";
      before = results.map((el) => el.hidden);
      results.forEach((el) => { el.hidden = true; });
      load();
    } else {
      delete document.body.dataset.view;
      results.forEach((el, i) => { el.hidden = before[i]; });
    }
    window.clipsearch.viewChanged();
    if (push) window.clipsearch.remember();
  }

  function sync() {
    const p = new URLSearchParams(location.search);
    const wanted = p.get("level") === "similar" ? "similar" : "copy";
    const reload = !view.hidden && level.value !== wanted;
    level.value = wanted;
    show(p.get("view") === "duplicates", false);
    if (reload) load();
  }

  document.getElementById("show-duplicates").addEventListener("click", () => show(true));
  document.getElementById("hide-duplicates").addEventListener("click", () => show(false));
  level.addEventListener("change", () => { load(); window.clipsearch.remember(); });
  window.addEventListener("popstate", sync);
  window.clipsearch.leaveView = () => show(false, false);  // a new search from the header shows its results
  sync();
})();
