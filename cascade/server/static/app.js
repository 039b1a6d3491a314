// Cascade's page: plain JS, no build step. Every piece of text from the index is inserted with
// textContent or as a text node, never as HTML: documents are untrusted input.
"use strict";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function marked(text, marks) {
  // text with [start, end) ranges wrapped in <mark>, built from text nodes
  const frag = document.createDocumentFragment();
  let at = 0;
  for (const [a, b] of marks || []) {
    if (a < at) continue;
    frag.append(document.createTextNode(text.slice(at, a)), el("mark", { text: text.slice(a, b) }));
    at = b;
  }
  frag.append(document.createTextNode(text.slice(at)));
  return frag;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function pipelineOf(side) {
  const typed = $("pipe-" + side).value.trim();
  return typed || $("pick-" + side).value;
}

async function search(side) {
  const params = new URLSearchParams({ q: $("q").value, k: $("k").value || "10" });
  const pipeline = pipelineOf(side);
  const where = $("where").value.trim();
  if (where && pipeline !== "bm25") throw new Error('with a pipeline, filter in its first stage: bm25(where="...")');
  if (pipeline !== "bm25") params.set("pipeline", pipeline);
  if (where) params.set("where", where);
  return api("/v1/search?" + params);
}

function timing(stages, total) {
  const box = el("div", { class: "timing" });
  const longest = Math.max(...stages.map((s) => s.ms), 0.001);
  for (const s of stages) {
    const fill = el("span", { class: "fill" });
    fill.style.width = Math.max(2, Math.round(200 * s.ms / longest)) + "px";
    box.append(el("div", { class: "bar" }, fill, el("span", { text: `${s.stage}: ${s.ms.toFixed(2)} ms` })));
  }
  box.append(el("div", { class: "muted", text: `total ${total.toFixed(2)} ms` }));
  return box;
}

function render(column, data, other) {
  column.replaceChildren();
  const result = data.results[0];
  const shared = new Set(other ? other.results[0].hits.map((h) => h.id) : []);
  column.append(el("h3", { text: data.pipeline }),
    el("div", { class: "muted", text: `generation ${data.generation} · ${result.hits.length} hits` }),
    timing(data.stages, data.ms));
  if (other) {
    const n = result.hits.filter((h) => shared.has(h.id)).length;
    column.append(el("div", { class: "overlap", text: `${n} of ${result.hits.length} also in the other list` }));
  }
  const list = el("ol", { class: "hits" });
  for (const hit of result.hits) {
    const title = el("button", { class: "hit-title", type: "button", text: hit.title || hit.id, "data-id": hit.id });
    title.addEventListener("click", () => openDoc(hit.id));
    const item = el("li", { "data-id": hit.id }, title, " ",
      el("span", { class: "score", text: `${hit.id} · ${hit.score.toFixed(3)}` }),
      el("div", { class: "snippet" }, marked(hit.snippet || "", hit.highlights)));
    if (shared.has(hit.id)) item.classList.add("shared");
    list.append(item);
  }
  column.append(list);
}

async function run(event) {
  if (event) event.preventDefault();
  const compare = $("compare").checked;
  $("col-b").hidden = !compare;
  $("status").textContent = "searching…";
  try {
    const a = await search("a");
    const b = compare ? await search("b") : null;
    render($("col-a"), a, b);
    if (b) render($("col-b"), b, a);
    $("status").textContent = "";
  } catch (err) {
    $("col-a").replaceChildren(el("p", { class: "error", text: err.message }));
    $("status").textContent = "";
  }
}

async function openDoc(id) {
  try {
    const doc = await api("/v1/docs/" + encodeURIComponent(id));
    $("doc-title").textContent = doc.title || doc.id;
    $("doc-id").textContent = doc.id;
    $("doc-meta").textContent = Object.keys(doc.meta).length ? JSON.stringify(doc.meta, null, 1) : "";
    $("doc-text").textContent = doc.text;
    $("doc").hidden = false;
  } catch (err) {
    $("status").textContent = err.message;
  }
}

async function start() {
  $("search").addEventListener("submit", run);
  $("doc-close").addEventListener("click", () => { $("doc").hidden = true; });
  for (const side of ["a", "b"]) $("pick-" + side).addEventListener("change", () => { $("pipe-" + side).value = ""; });
  try {
    const info = await api("/v1/info");
    for (const side of ["a", "b"]) {
      for (const p of info.pipelines) $("pick-" + side).append(el("option", { value: p, text: p }));
    }
    if (info.pipelines.length > 1) $("pick-b").value = info.pipelines[1];
    $("status").textContent = `${info.documents.toLocaleString()} documents · generation ${info.generation}`;
  } catch (err) {
    $("status").textContent = err.message;
  }
  const q = new URLSearchParams(location.search).get("q");
  if (q) { $("q").value = q; run(); }
}

document.addEventListener("DOMContentLoaded", start);
