"""Which machine the board shows for each record.

A machine is what a latency was measured on (CPU model, kernel ISA flags, threads, kernel path:
`leaderboard.machine_label`). A record without any latency measured nothing machine-specific, so
it makes no machine of its own: it is shown on the measuring machine its environment matches (the
same CPU model, ISA flags and threads), and only when no such machine exists under a label of its
environment alone. Merging boards (`leaderboard.merge`) still keys records by their full machine.
"""

from __future__ import annotations

from collections.abc import Sequence

from suite.report.leaderboard import machine, machine_label


def measured_latency(rec: dict) -> bool:
    """The record timed its encoder (any latency_ms_* value, on a quiet machine or not)."""
    return any(k.startswith("latency_ms_") and isinstance(v, (int, float)) for k, v in (rec.get("latency") or {}).items())


def _environment_key(rec: dict) -> tuple:
    m = machine(rec)
    return m["cpu_model"], tuple(m["isa"]), m["threads"]


def environment_label(rec: dict) -> str:
    """'AMD EPYC · 1 thread · avx2' from the environment only (no kernel path: nothing was timed)."""
    m = machine(rec)
    best = next((f for f in ("avx512_vnni", "avx_vnni", "avx2") if f in m["isa"]), "")
    threads = f"{m['threads']} thread{'' if m['threads'] == 1 else 's'}" if m["threads"] else ""
    return " · ".join(x for x in (m["cpu_model"], threads, best) if x)


def display_machines(records: Sequence[dict]) -> list[str]:
    """The machine label of each record, in order (see the module docstring)."""
    measuring: dict[tuple, set[str]] = {}
    for rec in records:
        if measured_latency(rec):
            measuring.setdefault(_environment_key(rec), set()).add(machine_label(rec))
    out = []
    for rec in records:
        if measured_latency(rec):
            out.append(machine_label(rec))
            continue
        labels = sorted(measuring.get(_environment_key(rec), ()))
        # several kernel paths on one host: the first, so the record still sits on a measuring machine
        out.append(labels[0] if labels else environment_label(rec))
    return out
