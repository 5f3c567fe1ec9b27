"""Tables from run records: mean ± std per setting and method, and the per-setting ranking.

A *setting* is (data, model, epochs, init sparsity, target sparsity); a *row* is a method in a
setting, summarised over its seeds. Standard deviations are sample standard deviations
(ddof=1; 0 for a single seed). In the ranking, a method is "within noise" of the best when
the difference of mean accuracies is at most two standard errors of that difference,
``2 * sqrt(std_best^2 / n_best + std^2 / n)``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

__all__ = ["Row", "summarise", "merge_runs", "format_table", "format_ranking", "markdown_table", "ranking"]

ORDER = ("dense", "fggp", "gmp", "global_mp", "global_mp_gupta", "granet", "annealed", "gradient", "taylor", "random")


@dataclass(frozen=True)
class Row:
    """One method in one setting, over ``n`` seeds. Accuracies are fractions; times in seconds."""

    data: str
    model: str
    epochs: int
    init_sparsity: float
    sparsity_target: float
    method: str
    n: int
    accuracy_mean: float
    accuracy_std: float
    sparsity_min: float
    sparsity_max: float
    time_mean: float
    macs_mean: float | None = None  # remaining multiply-accumulates as a fraction of dense; None in old results

    @property
    def setting(self) -> tuple:
        return (self.data, self.model, self.epochs, self.init_sparsity, self.sparsity_target)


def merge_runs(groups: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Concatenate run lists; a run (same data, model, epochs and key) seen twice is kept once (the last)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for runs in groups:
        for run in runs:
            merged[(run.get("data"), run.get("model"), run.get("epochs"), run.get("key"))] = run
    return list(merged.values())


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[dict[str, Any]]) -> list[Row]:
    """One row per (setting, method), sorted by setting then the method order of ``ORDER``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        key = (run["data"], run["model"], run["epochs"], run["init_sparsity"], run["sparsity_target"], run["method"])
        groups.setdefault(key, []).append(run)
    rows = [
        Row(
            *key,
            n=len(group),
            accuracy_mean=statistics.fmean(r["accuracy"] for r in group),
            accuracy_std=_std([r["accuracy"] for r in group]),
            sparsity_min=min(r["sparsity"] for r in group),
            sparsity_max=max(r["sparsity"] for r in group),
            time_mean=statistics.fmean(r["time_s"] for r in group),
            macs_mean=_macs_fraction(group),
        )  # fmt: skip
        for key, group in groups.items()
    ]
    rank = {m: i for i, m in enumerate(ORDER)}
    return sorted(
        rows,
        key=lambda r: (r.data, r.model, r.epochs, r.init_sparsity, r.sparsity_target, rank.get(r.method, 99), r.method),
    )


def _macs_fraction(group: list[dict[str, Any]]) -> float | None:
    """Mean over seeds of the remaining MACs fraction (runs written before MACs were recorded: None)."""
    if any(not r.get("dense_macs") for r in group):
        return None
    return statistics.fmean(r["macs"] / r["dense_macs"] for r in group)


def _sparsity_cell(row: Row) -> str:
    if row.sparsity_min == row.sparsity_max:
        return f"{100 * row.sparsity_min:.3f}"
    return f"{100 * row.sparsity_min:.3f}-{100 * row.sparsity_max:.3f}"


HEADER = (
    "data", "model", "epochs", "start", "target %", "method", "seeds", "accuracy %", "reached %", "MACs %", "time s",
)  # fmt: skip


def _cells(row: Row) -> tuple[str, ...]:
    start = "dense" if row.init_sparsity == 0 else f"{100 * row.init_sparsity:g}% ERK"
    return (
        row.data, row.model, str(row.epochs), start, f"{100 * row.sparsity_target:g}", row.method, str(row.n),
        f"{100 * row.accuracy_mean:.2f} ± {100 * row.accuracy_std:.2f}", _sparsity_cell(row),
        "-" if row.macs_mean is None else f"{100 * row.macs_mean:.2f}", f"{row.time_mean:.1f}",
    )  # fmt: skip


def format_table(rows: list[Row]) -> str:
    """A plain-text table (aligned columns) of the rows."""
    cells = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def ranking(rows: list[Row]) -> dict[tuple, list[tuple[Row, bool]]]:
    """Per pruned setting: rows best-first by mean accuracy, each flagged True when within noise of the best."""
    settings: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.method != "dense":
            settings.setdefault(row.setting, []).append(row)
    ranked = {}
    for setting, group in settings.items():
        group = sorted(group, key=lambda r: -r.accuracy_mean)
        best = group[0]
        ranked[setting] = [(r, best.accuracy_mean - r.accuracy_mean <= _noise(best, r)) for r in group]
    return ranked


def _noise(a: Row, b: Row) -> float:
    return 2.0 * math.sqrt(a.accuracy_std**2 / a.n + b.accuracy_std**2 / b.n)


def format_ranking(rows: list[Row]) -> str:
    """One line per setting: methods best-first; ``≈`` joins those within noise of the best."""
    lines = []
    for (data, model, epochs, init, target), group in ranking(rows).items():
        start = "dense start" if init == 0 else f"{100 * init:g}% ERK start"
        tied = [f"{r.method} {100 * r.accuracy_mean:.2f}" for r, near in group if near]
        text = " ≈ ".join(tied)
        previous = None
        for r in (r for r, near in group if not near):  # "=" for equal means: no order between them
            text += (" = " if r.accuracy_mean == previous else "  >  ") + f"{r.method} {100 * r.accuracy_mean:.2f}"
            previous = r.accuracy_mean
        lines.append(f"{data} {model} {epochs} ep, {start}, {100 * target:g}% sparsity: {text}")
    return "\n".join(lines)
