"""What the suite reports: one Row per line of the results table, the table itself (stdout),
progress lines (stderr), and the directory that results and kept daemon logs go to.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One line of the table. `ratio` is measured/baseline (or the inverse for rates, see `better`)."""

    bench: str
    metric: str
    measured: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: information only, no target
    note: str = ""
    details: dict = field(default_factory=dict)


def fmt_num(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit == "%":
        return f"{v:.2f} %"
    if unit.endswith("/s"):
        return f"{v:,.0f} {unit}"
    return f"{v:g} {unit}".strip()


def print_table(rows: list[Row]) -> None:
    head = ("benchmark", "measured", "baseline", "ratio", "target", "result")
    lines = []
    for r in rows:
        base = "—" if r.baseline is None else fmt_num(r.baseline, r.unit)
        if r.baseline_label:
            base += f" ({r.baseline_label})"
        lines.append((f"{r.bench}.{r.metric}" if r.metric else r.bench, fmt_num(r.measured, r.unit), base,
                      "—" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "—",
                      {True: "PASS", False: "MISS", None: "info"}[r.ok]))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)] if lines else [len(h) for h in head]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) for l in lines]
    print("\n".join(out))
    notes = [(f"{r.bench}.{r.metric}" if r.metric else r.bench, r.note) for r in rows if r.note]
    if notes:
        print()
        for name, note in notes:
            print(f"  {name}: {note}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
