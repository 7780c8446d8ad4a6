"""leaderboard.html: one self-contained offline page, rendered by Jinja2 with autoescape on.

Template `templates/leaderboard.html.j2`; CSS and JS are the project's own small files in
`static/` (plain JS, no library: the page needs filter, sort, tabs, expand, highlight and copy,
~250 lines, which a vendored table library would not shorten and would add a licence and an update
chore). Every string from a record goes through autoescape; the script only shows, hides, reorders
and highlights elements rendered here, it never builds HTML from data. With JS off every section
is shown, in order, as plain tables and SVG, each configuration with its records below it.
"""

from __future__ import annotations

import base64
import math
from functools import cache
from pathlib import Path

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from suite.report import chance, configs, views

HERE = Path(__file__).resolve().parent
CLAIMS_DIR = HERE.parents[1] / "conf" / "claims"
FILTERS = (  # (select id suffix, label, ConfigRow attribute)
    ("task", "task", "task"), ("paper", "paper", "paper"), ("method", "method", "method"),
    ("bits", "bits", "bits"), ("sparsity", "sparsity", "sparsity"), ("distill", "distillation", "distill"),
    ("budget", "budget", "budget"), ("machine", "machine", "machine"), ("profile", "profile", "profile"),
)


def fmt(v, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"


def breakable(v) -> Markup:
    """Escaped text that may wrap after each underscore ('ibm_deep_compression', 'torch_int8_onednn')."""
    return Markup("_<wbr>").join(escape(part) for part in str(v).split("_"))


def sort_key(v) -> str:
    return repr(float(v)) if isinstance(v, (int, float)) and math.isfinite(v) else ""


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=fmt, sortkey=sort_key, breakable=breakable)
    return env


def paper_titles(directory: Path = CLAIMS_DIR) -> dict[str, str]:
    out = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and doc.get("paper") and doc.get("title"):
            out[str(doc["paper"])] = str(doc["title"])
    return out


def figure_uri(svg: Path) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.read_bytes()).decode()


def page(report, figs=()) -> str:
    """The page for a `suite.report.Report` and its matplotlib figures."""
    records = report.board["records"]
    rows = views.rows(records)
    cfgs = configs.config_rows(rows)
    filters = [(fid, label, sorted({str(getattr(c, attr)) for c in cfgs})) for fid, label, attr in FILTERS]
    return environment().get_template("leaderboard.html.j2").render(
        rows=rows, configs=cfgs, blocks=configs.blocks(cfgs), filters=filters,
        filter_attrs={fid: attr for fid, _, attr in FILTERS},
        pareto=views.pareto(cfgs),
        budget_size=views.best_under_budget(cfgs, "size_mb"),
        budget_latency=views.best_under_budget(cfgs, "latency"),
        chance_margin=chance.limits().chance_margin,
        papers=views.claims_by_paper(report.verdicts, paper_titles()),
        figures=[{"title": f.title, "caption": f.caption, "uri": figure_uri(f.svg)} for f in figs],
        tables=report.tables, notes=report.notes, warnings=getattr(report, "warnings", []),
        sources=report.board.get("sources", []),
        machines=sorted({r.machine for r in rows}), dirty=sum(r.dirty for r in rows),
        css=(HERE / "static" / "board.css").read_text(), js=(HERE / "static" / "board.js").read_text())
