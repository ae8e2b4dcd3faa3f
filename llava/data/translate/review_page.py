"""The review sheet as one self-contained HTML page (no network): source and translation side by
side, an editable correction per turn, a reject box and a note per item, and a button that
exports the sheet as CSV for `apply-review`. Edits survive a reload (the browser's localStorage)."""

from __future__ import annotations

import html
import json

COLUMNS = ["lang", "item", "id", "turn", "from", "source", "translation", "correction", "reject", "note"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 6px; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.text { white-space: pre-wrap; width: 27%; }
td.edit { width: 30%; }
tr.first td { border-top: 3px solid #888; }
tr.rejected td { background: #fde8e8; }
textarea { width: 100%; min-height: 4em; font: inherit; box-sizing: border-box; }
.bar { margin: 0 0 1em; display: flex; gap: 1em; align-items: center; }
</style></head><body>
<h1>__TITLE__</h1>
<p>Write a correction only where the translation is wrong; leave it empty to accept the turn.
Keep every <code>&lt;image&gt;</code> where it is. Tick <b>reject</b> to drop the whole item.
Then export the CSV and run <code>python -m llava.data.translate apply-review FILE.csv --out RUN_DIR</code>.</p>
<div class="bar"><button id="export">Export corrections (CSV)</button><span id="status"></span></div>
<table><thead><tr><th>item</th><th>turn</th><th>source</th><th>translation</th><th>correction</th>
<th>reject item / note</th></tr></thead><tbody id="rows"></tbody></table>
<script type="application/json" id="data">__DATA__</script>
<script>
const COLUMNS = __COLUMNS__;
const rows = JSON.parse(document.getElementById("data").textContent);
const storeKey = "parrot-review:" + document.title;
const saved = JSON.parse(localStorage.getItem(storeKey) || "{}");
const body = document.getElementById("rows");
function save() { localStorage.setItem(storeKey, JSON.stringify(saved)); }
function itemRows(item) { return [...body.querySelectorAll(`tr[data-item="${item}"]`)]; }
rows.forEach((row, i) => {
  const state = saved[i] || (saved[i] = {correction: "", reject: "", note: ""});
  const tr = document.createElement("tr");
  tr.dataset.item = row.item;
  const first = i === 0 || rows[i - 1].item !== row.item;
  if (first) tr.className = "first";
  const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text;
    if (cls) td.className = cls; td.dir = "auto"; tr.appendChild(td); return td; };
  cell(first ? row.id : ""); cell(`${row.turn} ${row.from}`);
  cell(row.source, "text"); cell(row.translation, "text");
  const area = document.createElement("textarea"); area.dir = "auto"; area.value = state.correction;
  area.addEventListener("input", () => { state.correction = area.value; save(); });
  const edit = tr.appendChild(document.createElement("td")); edit.className = "edit"; edit.appendChild(area);
  const td = tr.appendChild(document.createElement("td"));
  if (first) {
    const box = document.createElement("input"); box.type = "checkbox"; box.checked = state.reject === "1";
    const note = document.createElement("input"); note.placeholder = "why"; note.value = state.note;
    const mark = () => itemRows(row.item).forEach(r => r.classList.toggle("rejected", box.checked));
    box.addEventListener("change", () => { state.reject = box.checked ? "1" : ""; save(); mark(); });
    note.addEventListener("input", () => { state.note = note.value; save(); });
    td.append(box, " reject ", note); setTimeout(mark);
  }
  body.appendChild(tr);
});
function csvField(value) { return '"' + String(value ?? "").replace(/"/g, '""') + '"'; }
document.getElementById("export").addEventListener("click", () => {
  let firstOfItem = {};
  rows.forEach((row, i) => { if (!(row.item in firstOfItem)) firstOfItem[row.item] = i; });
  const lines = [COLUMNS.map(csvField).join(",")];
  rows.forEach((row, i) => {
    const head = saved[firstOfItem[row.item]];
    const values = {...row, correction: saved[i].correction, reject: head.reject, note: head.note};
    lines.push(COLUMNS.map(c => csvField(values[c])).join(","));
  });
  const blob = new Blob(["\\ufeff" + lines.join("\\r\\n") + "\\r\\n"], {type: "text/csv;charset=utf-8"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob); link.download = "__CSV_NAME__"; link.click();
  document.getElementById("status").textContent = "exported " + link.download;
});
</script></body></html>
"""


def render_page(title: str, csv_name: str, rows: list[dict]) -> str:
    # "<" escaped inside the JSON so no text in the data can close the <script> element.
    data = json.dumps(rows, ensure_ascii=False).replace("<", "\\u003c")
    return (_PAGE.replace("__TITLE__", html.escape(title)).replace("__CSV_NAME__", csv_name)
            .replace("__COLUMNS__", json.dumps(COLUMNS)).replace("__DATA__", data))
