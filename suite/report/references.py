"""Paper reference numbers, typed in from docs/papers.md with their sources.

Numbers are facts from the named sources; where papers.md has no number, there is none here
(never a guess). Metric values are in percent, keyed like our `eval_<metric>` names
(`accuracy_mm` is MNLI mismatched, which our runs do not evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PO_README = "IntelLabs/Model-Compression-Research-Package, research/prune-once-for-all/README.md"
PO_SECONDARY = "Prune OFA sparse + int8 QAT, secondary sources cited in papers.md §1"
MLPERF = "MLPerf Inference v2.1 (open division, Neural Magic), cited in papers.md §1"
INTEL_12 = "Intel 1:2 sparse BERT-Base, mean of 5 seeds (proxy for Wang et al. 2022), papers.md §3"
SPARSEBERT = "Xu et al., NAACL 2021, arXiv:2104.08682 (SparseBERT), papers.md §4"
INTELCAFFE = "Gong et al., ReQuEST@ASPLOS 2018, arXiv:1805.08691, papers.md §2"

@dataclass(frozen=True)
class Reference:
    paper: str  # our experiment name (prune_ofa, intelcaffe_int8, ibm_deep_compression, sparsebert_s4)
    model: str  # our model label (bert_base, bert_large, distilbert)
    sparsity_kind: str  # dense | unstructured | block | nm
    sparsity: float  # fraction of zero weights
    weight_bits: int  # 32 (fp32) or 8 (int8)
    task: str
    metrics: dict[str, float]
    source: str
    note: str = ""
    seeds: int | None = None
    digits: int = 2  # decimals as printed in the source

    def text(self) -> str:
        return "/".join(f"{v:.{self.digits}f}" for v in self.metrics.values())

    def label(self) -> str:
        sp = "dense" if self.sparsity_kind == "dense" else f"{self.sparsity * 100:g}% {self.sparsity_kind}"
        bits = "fp32" if self.weight_bits >= 32 else f"int{self.weight_bits}"
        return f"{self.model} {sp} {bits}"


def _po(model: str, sparsity: float, squad, mnli, qqp, qnli, sst2) -> list[Reference]:
    common = {"paper": "prune_ofa", "model": model, "sparsity_kind": "unstructured",
              "sparsity": sparsity, "weight_bits": 32, "source": PO_README, "seeds": 2}
    return [
        Reference(task="squad", metrics={"exact_match": squad[0], "f1": squad[1]}, **common),
        Reference(task="mnli", metrics={"accuracy": mnli[0], "accuracy_mm": mnli[1]}, **common),
        Reference(task="qqp", metrics={"accuracy": qqp[0], "f1": qqp[1]}, **common),
        Reference(task="qnli", metrics={"accuracy": qnli}, **common),
        Reference(task="sst2", metrics={"accuracy": sst2}, **common),
    ]


REFERENCES: list[Reference] = [
    # Prune Once for All, sparse fp32, mean of 2 seeds.
    *_po("bert_base", 0.85, (81.10, 88.42), (82.71, 83.67), (91.15, 88.00), 90.34, 91.46),
    *_po("bert_base", 0.90, (79.83, 87.25), (81.45, 82.43), (90.93, 87.72), 89.07, 90.88),
    *_po("bert_large", 0.90, (83.35, 90.20), (83.74, 84.20), (91.48, 88.43), 91.39, 92.95),
    *_po("distilbert", 0.85, (78.10, 85.82), (81.35, 82.03), (90.29, 86.97), 88.31, 90.60),
    *_po("distilbert", 0.90, (76.91, 84.82), (80.68, 81.47), (90.05, 86.67), 87.66, 90.02),
    # Prune OFA sparse + int8 QAT (MNLI only).
    Reference("prune_ofa", "bert_base", "unstructured", 0.85, 8, "mnli",
              {"accuracy": 81.40, "accuracy_mm": 82.51}, PO_SECONDARY),
    Reference("prune_ofa", "bert_large", "unstructured", 0.90, 8, "mnli", {"accuracy": 83.47}, PO_SECONDARY),
    Reference("prune_ofa", "distilbert", "unstructured", 0.90, 8, "mnli",
              {"accuracy": 78.8, "accuracy_mm": 80.4}, PO_SECONDARY, digits=1),
    # MLPerf v2.1: dense BERT-Large and Prune OFA BERT-Large 80% block-sparse int8 (SQuAD F1).
    Reference("prune_ofa", "bert_large", "dense", 0.0, 32, "squad", {"f1": 90.874}, MLPERF, digits=3),
    Reference("prune_ofa", "bert_large", "block", 0.80, 8, "squad", {"f1": 90.41}, MLPERF,
              note="99.48% of dense; 88.2 MB vs 1.3 GB"),
    # Deep Compression (IBM): the paper's table numbers are not available; proxy: Intel 1:2 BERT-Base.
    *[Reference("ibm_deep_compression", "bert_base", "nm", 0.5, 32, task, metrics, INTEL_12, seeds=5, digits=1,
                note="proxy (1:2 N:M, fp32), not the paper's own numbers")
      for task, metrics in (("mnli", {"accuracy": 83.3, "accuracy_mm": 83.9}),
                            ("qqp", {"accuracy": 90.8, "f1": 87.6}), ("qnli", {"accuracy": 90.4}),
                            ("sst2", {"accuracy": 91.3}), ("stsb", {"pearson": 88.8, "spearmanr": 88.3}),
                            ("squad", {"exact_match": 80.5, "f1": 88.2}))],
    # SparseBERT / knowledge-aware pruning (BERT-Base): dense -> 95% sparse with distillation.
    Reference("sparsebert_s4", "bert_base", "dense", 0.0, 32, "mrpc", {"accuracy": 86.76, "f1": 90.78}, SPARSEBERT),
    Reference("sparsebert_s4", "bert_base", "unstructured", 0.95, 32, "mrpc", {"accuracy": 86.27, "f1": 90.54},
              SPARSEBERT),
    Reference("sparsebert_s4", "bert_base", "dense", 0.0, 32, "qnli", {"accuracy": 91.36}, SPARSEBERT),
    Reference("sparsebert_s4", "bert_base", "unstructured", 0.95, 32, "qnli", {"accuracy": 90.21}, SPARSEBERT),
]


@dataclass(frozen=True)
class Anchor:
    """A reference fact that has no row of ours to sit beside (other models or hardware)."""

    paper: str
    text: str
    source: str


ANCHORS: list[Anchor] = [
    Anchor("prune_ofa", "Released BERT-Large 90% SQuAD checkpoint: EM 83.567 / F1 90.208.", PO_README),
    Anchor("prune_ofa", "Compression convention: 40x = 32/8 bits x 1/(1-0.90) density, values only.", PO_README),
    Anchor("intelcaffe_int8", "FP32 -> int8 + all optimizations (one 18-core Xeon socket): ResNet-50 158 -> 462 "
           "img/s, 10.7 -> 3.5 ms; Inception-v3 126 -> 282, 14.3 -> 5.9 ms; SSD 31 -> 43, 33.7 -> 24.8 ms; "
           "the int8 step alone 1.26x-1.61x throughput.", INTELCAFFE),
    Anchor("intelcaffe_int8", "Accuracy FP32 -> int8: ResNet-50 top-1 72.5 -> 71.84; Inception-v3 75.44 -> "
           "75.31; SSD mAP 77.68 -> 77.51.", INTELCAFFE),
    Anchor("ibm_deep_compression", "4-bit + 50% N:M (2:4) = 16x compression while keeping accuracy; the "
           "paper's table numbers are not available.", "Wang et al., NeurIPS 2022, papers.md §3"),
    Anchor("sparsebert_s4", "95% sparsity (20x) with negligible loss; S4 hardware: sparse acceleration up to "
           "32x.", "arXiv:2104.08682, arXiv:2207.08006, papers.md §4"),
]


@dataclass
class RefMatch:
    ref: Reference
    exact_model: bool
    same_paper: bool = field(default=True)


def pattern_kind(pattern: str) -> str:
    """The papers' kind of a record's sparsity_pattern: dense | unstructured | block (block1x4) | nm (2:4)."""
    if ":" in pattern:
        return "nm"
    return "block" if pattern.startswith("block") else (pattern or "dense")


def find_reference(paper: str, model: str, task: str, pattern: str, sparsity: float,
                   weight_bits: int, refs: list[Reference] = REFERENCES) -> RefMatch | None:
    """The paper number for this row: same task, sparsity kind (from the record's pattern) and level,
    and bit width.

    Preference: the same model, then BERT-Base, then any model; the same paper first. When the
    model differs the table names the reference's model, so no number passes for another's.
    """
    kind = pattern_kind(pattern)
    bits = 32 if weight_bits >= 32 else weight_bits
    cands = [r for r in refs if r.task == task and r.sparsity_kind == kind
             and abs(r.sparsity - (0.0 if kind == "dense" else sparsity)) < 5e-3 and r.weight_bits == bits]
    if not cands:
        return None
    best = min(cands, key=lambda r: (r.model != model, r.paper != paper, r.model != "bert_base"))
    return RefMatch(best, best.model == model, best.paper == paper)


def references_for(task: str, weight_bits: int = 32, refs: list[Reference] = REFERENCES) -> list[Reference]:
    """The paper points of a task (sparse or dense, one bit width): what a sparsity curve shows beside ours."""
    bits = 32 if weight_bits >= 32 else weight_bits
    return [r for r in refs if r.task == task and r.weight_bits == bits]
