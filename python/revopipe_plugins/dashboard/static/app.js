// revopipe dashboard: lays out the widgets from /api/widgets, draws each from the generic
// keys of its data (cards, figure, table, ranges, empty) with plotly.js, and applies the
// updates the server pushes on /api/stream. No framework: this file is the whole glue.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const widgets = new Map(); // id -> {spec, el, range}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 0 : 2);
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  setTimeout(() => t.classList.remove("show"), 3000);
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function plot(el, figure, config) {
  if (typeof Plotly === "undefined") return;
  Plotly.react(el, figure.data || [], figure.layout || {},
               Object.assign({displayModeBar: false, responsive: true}, config || {}));
}

function renderCards(cards) {
  const box = h("div", {class: "cards"});
  for (const c of cards) {
    const card = h("div", {class: "card", "data-status": c.status || "", "data-label": c.label},
      h("div", {class: "label", text: c.label}),
      h("div", {class: "value", text: c.text !== undefined ? c.text : fmt(c.value) + (c.unit && c.value !== null && c.value !== undefined ? " " + c.unit : "")}));
    if (c.spark && c.spark.x && c.spark.x.length) {
      const sp = h("div", {class: "spark"});
      card.append(sp);
      requestAnimationFrame(() => plot(sp, {
        data: [{type: "scatter", mode: "lines", x: c.spark.x, y: c.spark.y, line: {width: 1.5}, hoverinfo: "y"}],
        layout: {margin: {l: 0, r: 0, t: 0, b: 0}, xaxis: {visible: false, type: "date"},
                 yaxis: {visible: false}, showlegend: false, height: 36,
                 paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)"},
      }, {staticPlot: true}));
    }
    box.append(card);
  }
  return box;
}

function renderTable(table, id) {
  const hasActions = table.rows.some(r => r._actions && r._actions.length);
  const head = h("tr", null, ...table.columns.map(c => h("th", {text: c.label})));
  if (hasActions) head.append(h("th", {text: ""}));
  const body = h("tbody");
  for (const row of table.rows) {
    const tr = h("tr", {"data-key": row.fingerprint || row.subject || row.route || row.title || ""});
    for (const c of table.columns) {
      const v = row[c.key];
      tr.append(h("td", {text: fmt(v), "data-status": c.key === "status" ? v : null}));
    }
    if (hasActions) {
      const td = h("td");
      for (const a of row._actions || []) {
        td.append(h("button", {
          text: a.label, "data-action": a.label,
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              await post(a.post, a.body);
              toast(`${a.label}: done`);
              await refetch(id);
            } catch (e) { toast(`${a.label} failed: ${e.message}`); ev.target.disabled = false; }
          },
        }));
      }
      tr.append(td);
    }
    body.append(tr);
  }
  return h("table", null, h("thead", null, head), body);
}

function render(id, data, seq) {
  const w = widgets.get(id);
  if (!w) return;
  const body = w.el.querySelector(".body");
  body.replaceChildren();
  if (data.error) body.append(h("div", {class: "error", text: data.error}));
  if (data.ranges) {
    const bar = h("div", {class: "ranges"});
    for (const r of data.ranges) {
      bar.append(h("button", {text: r, "aria-pressed": String(r === (w.range || data.range)),
                              onclick: () => { w.range = r; refetch(id); }}));
    }
    body.append(bar);
  }
  if (data.cards && data.cards.length) body.append(renderCards(data.cards));
  if (data.figure && data.figure.data && data.figure.data.length) {
    const fig = h("div", {class: "figure"});
    body.append(fig);
    plot(fig, data.figure);
  }
  if (data.table && data.table.rows && data.table.rows.length) body.append(renderTable(data.table, id));
  if (data.empty) body.append(h("div", {class: "empty", text: data.empty}));
  if (data.note) body.append(h("div", {class: "note", text: data.note}));
  w.updates += 1;
  w.el.setAttribute("data-updated", String(w.updates));
  w.el.setAttribute("data-seq", String(seq || 0));
  w.el.setAttribute("data-updated-at", String(Date.now()));
}

async function refetch(id) {
  const w = widgets.get(id);
  const q = w.range ? `?range=${encodeURIComponent(w.range)}` : "";
  const r = await fetch(`/api/widgets/${encodeURIComponent(id)}${q}`, {credentials: "same-origin"});
  const body = await r.json();
  if (!r.ok) { toast(body.error || `HTTP ${r.status}`); return; }
  render(id, body.data, body.seq);
}

function connect() {
  const status = document.getElementById("connection");
  const es = new EventSource("/api/stream");
  es.onopen = () => { status.dataset.state = "live"; status.textContent = "live"; };
  es.onerror = () => { status.dataset.state = "lost"; status.textContent = "reconnecting…"; };
  es.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    const w = widgets.get(msg.widget);
    if (!w) return;
    document.getElementById("seq").dataset.seq = String(msg.seq);
    // A tab that chose another range asks for it; the push carries the default one.
    if (w.range && msg.data.range && w.range !== msg.data.range) refetch(msg.widget);
    else render(msg.widget, msg.data, msg.seq);
  };
}

async function main() {
  const r = await fetch("/api/widgets", {credentials: "same-origin"});
  const layout = await r.json();
  const grid = document.getElementById("grid");
  for (const spec of layout.widgets) {
    const el = h("section", {
      class: "widget", id: `widget-${spec.id}`, "data-widget": spec.id, "data-type": spec.type,
      "data-updated": "0",
      style: `grid-column: ${spec.x + 1} / span ${spec.w}; grid-row: ${spec.y + 1} / span ${spec.h};`,
    }, h("h2", null, h("span", {text: spec.title})), h("div", {class: "body"}, h("div", {class: "empty", text: "loading…"})));
    grid.append(el);
    widgets.set(spec.id, {spec, el, range: null, updates: 0});
  }
  grid.dataset.ready = "true";
  connect();
}

main().catch(e => { document.getElementById("grid").append(h("div", {class: "error", text: String(e)})); });
