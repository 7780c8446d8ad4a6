"""Claims of the papers as data (conf/claims/<paper>.yaml), judged by one function.

`verdicts(groups, kernel_rows)` -> one `ClaimVerdict` per claim x profile x point of view (at the
paper's scale, at the model's own knee, at each sparsity): holds / does not hold / inconclusive /
not run, with the reason, the rule, the budget and model it rests on, the evidence cell ids, the
paper's number and ours. Each YAML names a rule kind (suite/report/rules.py) with its cell filter,
metric and threshold; nothing about a claim is written in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from suite.report.judge import FAILS, HOLDS, INCONCLUSIVE, NOT_RUN, Limits, Outcome
from suite.report.records import PROFILE_ORDER, Group

CLAIMS_DIR = Path(__file__).resolve().parents[2] / "conf" / "claims"
LIMITS_FILE = "chance.yaml"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_RUN)


class ClaimSpec(BaseModel):
    """One claim of conf/claims/<paper>.yaml."""

    model_config = ConfigDict(extra="forbid")

    id: str
    paper: str = ""
    text: str
    rule: str = Field(description="rule kind: a function of suite/report/rules.py (RULES)")
    describe: str = Field(description="the rule in words, as shown beside the verdict")
    cells: dict[str, Any] = Field(default_factory=dict, description="filter: axis -> value | [values] | {min, max}")
    exclude: dict[str, Any] = Field(default_factory=dict, description="cells matching this filter are left out")
    metric: str = "eval_primary"
    threshold: float = 0.0
    relative: bool = False  # threshold is a fraction of the reference, not points
    knee: bool = False  # size-dependent: judged again at the model's own knee
    converged: bool = True  # a verdict needs a reference shown converged by a budget twin (else inconclusive)
    strict: bool = False  # the difference must clear the line (more than), not only reach it (at least)
    options: dict[str, Any] = Field(default_factory=dict)  # rule-specific (twin axes, off values, ...)
    reference: str = ""  # the paper's number(s), as papers.md gives them

    @field_validator("rule")
    @classmethod
    def _known(cls, v: str) -> str:
        from suite.report.rules import RULES

        if v not in RULES:
            raise ValueError(f"unknown rule '{v}'; allowed: {', '.join(sorted(RULES))}")
        return v


class PaperClaims(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paper: str
    order: int = 99  # where the paper's claims come in the table (papers.md section)
    title: str
    claims: list[ClaimSpec]


@dataclass
class ClaimVerdict:
    """One row of the claims table (INTERFACES #5); `to_dict()` is what the board renders."""

    id: str
    paper: str
    text: str
    verdict: str  # holds | does not hold | inconclusive | not run
    reason: str
    rule: str
    budget: str  # steps x batch, examples (each budget the evidence rests on)
    model: str
    evidence: list[str]  # cell ids
    paper_number: str
    ours: str
    profile: str = ""
    at: str = ""
    needs: list[dict] = field(default_factory=list)  # what would decide it (suite.report.judge.Need, as dicts)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ loading

def load_specs(directory: Path = CLAIMS_DIR) -> list[ClaimSpec]:
    """Every claim of every conf/claims/<paper>.yaml, validated; duplicates are an error."""
    docs: list[PaperClaims] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == LIMITS_FILE:
            continue
        try:
            docs.append(PaperClaims.model_validate(yaml.safe_load(path.read_text())))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"{path}: {where}: {err['msg']}") from None
    specs: list[ClaimSpec] = []
    for doc in sorted(docs, key=lambda d: (d.order, d.paper)):
        for c in doc.claims:
            specs.append(c.model_copy(update={"paper": c.paper or doc.paper}))
    ids = [s.id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim id {dup[0]} defined twice in {directory}")
    return specs


def load_limits(directory: Path = CLAIMS_DIR) -> Limits:
    path = directory / LIMITS_FILE
    doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return Limits(chance={k: float(v) for k, v in (doc.get("chance") or {}).items()},
                  **{k: float(v) for k, v in (doc.get("limits") or {}).items()})


@cache
def _default() -> tuple[tuple[ClaimSpec, ...], Limits]:
    return tuple(load_specs()), load_limits()


# ------------------------------------------------------------------ the one function

def verdicts(groups: Sequence[Group], kernel_rows: Sequence[dict] = (), specs: Sequence[ClaimSpec] | None = None,
             limits: Limits | None = None) -> list[ClaimVerdict]:
    """Every claim judged on the groups of each profile (kernel rows for speed claims without cells)."""
    from suite.report.rules import RULES

    if specs is None or limits is None:
        dspecs, dlimits = _default()
        specs, limits = specs if specs is not None else dspecs, limits or dlimits
    profiles = sorted({g.profile for g in groups}, key=lambda p: (PROFILE_ORDER.get(p, 9), p))
    rows: list[ClaimVerdict] = []
    for spec in specs:
        found, reasons = [], []
        for p in profiles:  # a profile with any verdict shows all its points of view (a knee not run too)
            outs = RULES[spec.rule](spec, [g for g in groups if g.profile == p], (), limits)
            if any(o.status != NOT_RUN for o in outs):
                found += [(p, o) for o in outs]
            else:
                reasons += [(p, o) for o in outs]
        if not found and kernel_rows:
            for o in RULES[spec.rule](spec, [], kernel_rows, limits):
                if o.status != NOT_RUN:
                    found.append(("kernel bench", o))
        if not found:
            reason = reasons[0][1].reason if reasons else "no runs recorded"
            found = [("", Outcome(NOT_RUN, reason))]
        rows += [_row(spec, p, o) for p, o in found]
    return rows


def _row(spec: ClaimSpec, profile: str, o: Outcome) -> ClaimVerdict:
    budgets = list(dict.fromkeys(g.budget_text for g in o.evidence))
    models = sorted({g.model_label for g in o.evidence})
    ids: list[str] = []
    for g in o.evidence:
        ids += [i for i in g.cell_ids if i and i not in ids]
    return ClaimVerdict(spec.id, spec.paper, spec.text, o.status, o.reason, spec.describe, "; ".join(budgets) or "–",
                        ", ".join(models) or "–", ids, spec.reference or "–", o.ours or "–", profile, o.at,
                        [n.to_dict() for n in o.needs] if o.status == INCONCLUSIVE else [])


# ------------------------------------------------------------------ rendering helpers

def short_id(cell_id: str) -> str:
    """First 8 characters of a hex cell_id; other evidence names (kernels-bench) stay whole."""
    return cell_id[:8] if len(cell_id) == 16 and all(ch in "0123456789abcdef" for ch in cell_id) else cell_id


def need_text(needs: Sequence[dict], shown: int = 3) -> str:
    """The needs of a verdict in words ('–' for a decided one)."""
    texts = list(dict.fromkeys(n.get("text") or n.get("kind", "") for n in needs))
    if not texts:
        return "–"
    return "; ".join(texts[:shown]) + (f"; +{len(texts) - shown} more" if len(texts) > shown else "")


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_markdown(rows: Sequence[ClaimVerdict], max_ids: int = 12) -> str:
    lines = ["# Claims of the papers, judged on the recorded runs", "",
             "Each verdict is computed from the runs' `result.json` records by the rule of its claim "
             "(conf/claims/<paper>.yaml, suite/report/rules.py), on the 95% interval of each difference "
             "(paired bootstrap over the eval examples and the seeds, suite/report/intervals.py): **holds** "
             "when the interval clears the claim's line, **does not hold** when it lies beyond it, both "
             "against a reference shown converged by a budget twin (unless the claim says otherwise); "
             "**inconclusive** otherwise (the interval straddles the line, the reference is at chance or "
             "still gaining > 1 pt per budget doubling, a failing gap is still closing), with what would "
             "decide it. Size-dependent claims are judged at the paper's scale and at the model's own knee. "
             "Cells: `cell_id` (first 8 characters; leaderboard.json has them in full).", "",
             "| claim | paper | statement | at | verdict | reason | what would decide it | budget | model "
             "| paper's number | ours | rule | cells |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ids = [short_id(i) for i in r.evidence]
        shown = " ".join(ids[:max_ids]) + (f" +{len(ids) - max_ids} more" if len(ids) > max_ids else "")
        at = " ".join(x for x in (r.profile, r.at) if x) or "–"
        cells = [r.id, r.paper, r.text, at, f"**{r.verdict}**", r.reason, need_text(r.needs), r.budget, r.model,
                 r.paper_number, r.ours, r.rule, shown or "–"]
        lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
    return "\n".join(lines) + "\n"
