"""No import cycle among the modules of suite/ and kernels/ (every import statement, including
the ones inside functions, read with ast; package __init__ files, which only re-export, are
left out). A cycle means two modules that cannot be understood, tested or moved apart."""

import ast
from pathlib import Path

from suite.paths import ROOT

PACKAGES = ("suite", "kernels")


def _modules() -> dict[str, Path]:
    out = {}
    for root in PACKAGES:
        for path in (ROOT / root).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            if "tests" in rel.parts or "modules" in rel.parts:  # metric scripts are loaded by evaluate
                continue
            out[".".join(rel.parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]):
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                yield f"{base}.{a.name}" if f"{base}.{a.name}" in known else base


def import_graph() -> dict[str, set[str]]:
    everything = _modules()
    mods = {n: p for n, p in everything.items() if p.name != "__init__.py"}
    return {n: {m for m in _imports(n, p, set(everything)) if m in mods and m != n} for n, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "suite.identity" in graph["suite.tracking"]  # imported inside cell_id()
    assert "suite.run" in graph and "kernels.formats" in graph


def test_no_import_cycle_in_suite_and_kernels():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
