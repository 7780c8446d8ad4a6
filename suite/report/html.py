"""leaderboard.html: one self-contained static page (inline CSS/JS, plots as data: URIs).

Every string that comes from a run (config values, model names, tags) goes through `esc`; the
script only reorders and hides the rows rendered here, it never builds HTML from data.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

from suite.report.claims import ClaimRow, short_id
from suite.report.plots import Figure


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(v, digits: int = 2) -> tuple[str, str]:
    """(shown text, sort key) for a number; missing values sort last."""
    if isinstance(v, (int, float)) and math.isfinite(v):
        return f"{v:.{digits}f}", repr(float(v))
    return "–", ""


COLUMNS = [  # (header, kind, getter)
    ("experiment", "text", lambda r: r["experiment"]),
    ("model", "text", lambda r: r["model"]),
    ("task", "text", lambda r: r["task"]),
    ("sparsity", "text", lambda r: r["sparsity"]["label"]),
    ("target", "num", lambda r: r["sparsity"]["target"]),
    ("measured", "num3", lambda r: r["sparsity"]["measured"]),
    ("bits", "text", lambda r: r["quant"]["label"]),
    ("distill", "text", lambda r: r["distill"]),
    ("variant", "text", lambda r: ", ".join(f"{k}={v}" for k, v in r["variant"].items())),
    ("seed", "text", lambda r: r["seed"]),
    ("eval_primary", "num", lambda r: r["eval_primary"]),
    ("compression nominal", "num1", lambda r: r["compression"]["nominal"]),
    ("compression packed", "num", lambda r: r["compression"]["packed"]),
    ("latency ms (best)", "num", lambda r: min(r["latency_ms"].values()) if r["latency_ms"] else None),
    ("cell_id", "text", lambda r: r["cell_id"]),
    ("cpu", "text", lambda r: r["environment"].get("cpu_model") or ""),
]

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}#cells th{cursor:pointer;user-select:none}
#cells th.asc::after{content:" \\25B2"}#cells th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.controls{margin:.6em 0}.controls input,.controls select{margin-right:1em}
.holds{background:#e3f6e3}.fails{background:#fbe3e3}.notrun{color:#777}
figure{display:inline-block;margin:.5em;max-width:640px}figure img{max-width:100%}
figcaption{font-size:12px;color:#555}.scroll{overflow-x:auto;max-width:100%}pre{background:#f8f8f8;padding:.6em;overflow:auto;font-size:12px}
"""

JS = """
(function(){
  var table=document.getElementById('cells'), body=table.tBodies[0];
  var rows=Array.prototype.slice.call(body.rows);
  var filter=document.getElementById('filter'), count=document.getElementById('count');
  var selects=Array.prototype.slice.call(document.querySelectorAll('select.colfilter'));
  function apply(){
    var q=filter.value.trim().toLowerCase(), shown=0;
    rows.forEach(function(r){
      var ok=!q||r.textContent.toLowerCase().indexOf(q)>=0;
      selects.forEach(function(s){
        if(s.value && r.cells[+s.dataset.col].textContent!==s.value) ok=false;
      });
      r.style.display=ok?'':'none'; if(ok) shown++;
    });
    count.textContent=shown+' of '+rows.length+' cells shown';
  }
  function key(r,i,num){
    var c=r.cells[i], k=c.getAttribute('data-sort');
    if(num){ return k===''||k===null ? null : parseFloat(k); }
    return c.textContent.toLowerCase();
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc'), num=th.dataset.kind!=='text';
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      rows.sort(function(a,b){
        var x=key(a,i,num), y=key(b,i,num);
        if(x===y) return 0; if(x===null) return 1; if(y===null) return -1;
        return (x<y?-1:1)*(asc?1:-1);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  filter.addEventListener('input',apply);
  selects.forEach(function(s){s.addEventListener('change',apply);});
  apply();
})();
"""


def cells_table(records: Sequence[dict]) -> str:
    head = "".join(f'<th data-kind="{"text" if kind == "text" else "num"}">{esc(name)}</th>'
                   for name, kind, _ in COLUMNS)
    body = []
    for r in records:
        tds = []
        for _, kind, get in COLUMNS:
            v = get(r)
            if kind == "text":
                tds.append(f"<td>{esc(v)}</td>")
            else:
                text, sort = _num(v, {"num1": 1, "num3": 3}.get(kind, 2))
                tds.append(f'<td class="num" data-sort="{esc(sort)}">{esc(text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table id="cells"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def column_filters(records: Sequence[dict], names: Sequence[str] = ("experiment", "model", "task")) -> str:
    out = []
    for i, (name, _, get) in enumerate(COLUMNS):
        if name not in names:
            continue
        values = sorted({str(get(r)) for r in records})
        opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
        out.append(f'<label>{esc(name)} <select class="colfilter" id="filter-{esc(name)}" data-col="{i}">'
                   f'<option value="">all</option>{opts}</select></label>')
    return "".join(out)


def claims_table(rows: Sequence[ClaimRow]) -> str:
    cls = {"holds": "holds", "does not hold": "fails"}
    out = ["<table id=\"claims\"><thead><tr><th>claim</th><th>statement</th><th>verdict</th><th>profile</th>"
           "<th>model</th><th>rule</th><th>evidence</th><th>cells</th></tr></thead><tbody>"]
    for r in rows:
        v = r.verdict
        out.append(f'<tr class="{cls.get(v.status, "notrun")}"><td>{esc(r.claim.id)}</td><td>{esc(r.claim.statement)}'
                   f"</td><td><b>{esc(v.status)}</b></td><td>{esc(v.profile or '–')}</td>"
                   f"<td>{esc(', '.join(v.models) or '–')}</td><td>{esc(r.claim.rule)}</td><td>{esc(v.detail)}</td>"
                   f"<td>{esc(' '.join(short_id(c) for c in v.cells) or '–')}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def figures(figs: Sequence[Figure]) -> str:
    out = []
    for f in figs:
        data = base64.b64encode(f.svg.read_bytes()).decode()
        out.append(f'<figure><img alt="{esc(f.title)}" src="data:image/svg+xml;base64,{data}">'
                   f"<figcaption>{esc(f.title)}. {esc(f.caption)}</figcaption></figure>")
    return "".join(out)


def page(records: Sequence[dict], claim_rows: Sequence[ClaimRow], figs: Sequence[Figure],
         tables: dict[str, str], notes: Sequence[str], source: str) -> str:
    details = "".join(f"<details><summary>{esc(name)}</summary><pre>{esc(md)}</pre></details>"
                      for name, md in tables.items())
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>sparq leaderboard</title><style>{CSS}</style></head>
<body>
<h1>sparq leaderboard</h1>
<p>Rebuilt from MLflow ({esc(source)}) by <code>python -m suite.report</code>; nothing was re-run.
{len(records)} recorded cells. Machine-readable: <code>leaderboard.json</code> (schema <code>leaderboard.schema.json</code>).</p>
<h2>Cells</h2>
<div class="controls"><label>filter <input id="filter" type="search" placeholder="any text"></label>
{column_filters(records)}<span id="count"></span></div>
<div class="scroll">{cells_table(records)}</div>
<h2>Claims</h2>
{claims_table(claim_rows)}
<h2>Plots</h2>
{figures(figs) or "<p>No plots (no recorded cells).</p>"}
<ul>{note_html}</ul>
<h2>Tables (paper layout)</h2>
{details or "<p>No recorded cells.</p>"}
<script>{JS}</script>
</body></html>
"""
