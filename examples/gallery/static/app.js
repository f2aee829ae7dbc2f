// The gallery page: classify an upload, search by text, browse the library.
// All text from the server or the user is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const PER_PAGE = Math.min(100, Math.max(1,
  parseInt(new URLSearchParams(location.search).get("per_page") || "12", 10) || 12));
let page = 1;
let pages = 1;

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

async function api(url, options) {
  const resp = await fetch(url, options);
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const why = body && body.error ? body.error : resp.statusText;
    throw new Error(`${why} (HTTP ${resp.status})`);
  }
  return body;
}

function card(item, score) {
  const fig = document.createElement("figure");
  fig.className = "card";
  fig.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = `/image/${encodeURIComponent(item.id)}`;
  img.alt = item.name;
  img.loading = "lazy";
  const cap = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = item.name;
  name.title = item.name;
  cap.append(name);
  if (score !== undefined) {
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = score.toFixed(3);
    cap.append(s);
  }
  fig.append(img, cap);
  fig.addEventListener("click", () => similar(item));
  return fig;
}

async function refreshInfo() {
  const info = await api("/api/info");
  $("model-name").textContent = info.model;
  $("library-size").textContent = String(info.library_size);
  return info;
}

async function loadPage(p) {
  const data = await api(`/api/library?page=${p}&per_page=${PER_PAGE}`);
  page = data.page;
  pages = data.pages;
  $("library-size").textContent = String(data.total);
  const grid = $("library-grid");
  grid.replaceChildren(...data.items.map((it) => card(it)));
  $("page-info").textContent = `Page ${data.page} of ${data.pages} (${data.total} images)`;
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
}

function showHits(note, results) {
  $("search-note").textContent = note;
  $("search-results").replaceChildren(...results.map((h) => card(h, h.score)));
}

async function similar(item) {
  try {
    showError("");
    const k = $("k").value;
    const data = await api(`/api/similar/${encodeURIComponent(item.id)}?k=${k}`);
    showHits(`Most similar to ${item.name}:`, data.results);
    $("search").scrollIntoView({ behavior: "smooth" });
  } catch (e) { showError(e.message); }
}

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("query").value.trim();
  if (!q) return;
  const btn = $("search-btn");
  btn.disabled = true;
  try {
    showError("");
    const k = $("k").value;
    const data = await api(`/api/search?q=${encodeURIComponent(q)}&k=${k}`);
    showHits(`${data.results.length} best matches for “${q}”:`, data.results);
  } catch (e) { showError(e.message); } finally { btn.disabled = false; }
});

$("classify-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const btn = $("classify-btn");
  btn.disabled = true;
  $("classify-note").textContent = "Classifying…";
  try {
    showError("");
    const preview = $("preview");
    if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    const labels = encodeURIComponent($("labels").value);
    const data = await api(`/api/classify?labels=${labels}`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: file,
    });
    const list = $("classify-results");
    list.replaceChildren(...data.labels.map((l) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = l.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(1, Math.round(l.prob * 200))}px`;
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.textContent = `${(l.prob * 100).toFixed(1)} %`;
      li.append(name, bar, prob);
      return li;
    }));
    $("classify-note").textContent = data.added
      ? `Added to the library as #${data.id}.`
      : `Already in the library as #${data.id}.`;
    $("library-size").textContent = String(data.library_size);
    await loadPage(1);
  } catch (e) {
    $("classify-note").textContent = "";
    $("classify-results").replaceChildren();
    $("preview").hidden = true;
    showError(e.message);
  } finally { btn.disabled = false; }
});

$("prev").addEventListener("click", () => loadPage(page - 1).catch((e) => showError(e.message)));
$("next").addEventListener("click", () => loadPage(page + 1).catch((e) => showError(e.message)));

(async () => {
  try {
    await refreshInfo();
    await loadPage(1);
    document.body.dataset.ready = "1";
  } catch (e) { showError(e.message); }
})();
