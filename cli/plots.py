"""PNG figures of a result folder (matplotlib, Agg backend: no display needed).

- ``accuracy_vs_sparsity.png``: mean test accuracy ± std over seeds against the target
  sparsity, one line per method, the dense accuracy as a band; one panel per data, model,
  epochs and start;
- ``accuracy_vs_flops.png``: the same accuracies against the remaining multiply-accumulates per
  sample (% of the dense model's, log scale; the Global MP paper's FLOPs axis);
- ``sparsity_schedule.png``: the sparsity reached over optimizer steps (the recorded trace)
  at the highest target sparsity, one line per method (first seed); one panel per start;
- ``layer_density.png``: the kept fraction of every weight tensor at the highest target
  sparsity (mean over seeds), one bar group per layer; one panel per start.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import matplotlib.ticker  # noqa: E402

from .report import ORDER, Row  # noqa: E402

__all__ = ["write_plots", "PLOTS"]

PLOTS = ("accuracy_vs_sparsity.png", "accuracy_vs_flops.png", "sparsity_schedule.png", "layer_density.png")
STYLES = ("-", "--", ":", "-.")  # methods with the same schedule overlap: dashes keep each one visible


def write_plots(folder: str, rows: list[Row], runs: list[dict[str, Any]]) -> list[str]:
    """Write the four figures into ``folder``; return their paths."""
    paths = [os.path.join(folder, name) for name in PLOTS]
    _accuracy(paths[0], rows, flops=False)
    _accuracy(paths[1], rows, flops=True)
    _schedule(paths[2], runs)
    _layers(paths[3], runs)
    return paths


def _methods(names: set[str]) -> list[str]:
    return sorted(names, key=lambda m: (ORDER.index(m) if m in ORDER else 99, m))


def _start(init: float) -> str:
    return "dense start" if init == 0 else f"{100 * init:g}% ERK start"


def _panels(count: int, width: float = 5.5, height: float = 4.0) -> tuple[Any, list[Any]]:
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return figure, list(axes[0])


def _save(figure: Any, path: str) -> None:
    figure.tight_layout()
    temporary = path + ".tmp.png"
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.replace(temporary, path)


def _accuracy(path: str, rows: list[Row], flops: bool) -> None:
    """Accuracy against target sparsity, or (``flops``) against the remaining MACs in %."""
    pruned = [r for r in rows if r.method != "dense" and (r.macs_mean is not None or not flops)]
    panels = sorted({(r.data, r.model, r.epochs, r.init_sparsity) for r in pruned}) or [None]
    figure, axes = _panels(len(panels))
    for ax, panel in zip(axes, panels):
        if panel is None:
            ax.text(0.5, 0.5, "no pruned runs" + (" with MACs recorded" if flops else ""), ha="center", va="center")
            continue
        data, model, epochs, init = panel
        for dense in (r for r in rows if r.method == "dense" and (r.data, r.model, r.epochs) == panel[:3]):
            mean, std = 100 * dense.accuracy_mean, 100 * dense.accuracy_std
            ax.axhline(mean, color="black", lw=1, label=f"dense {mean:.2f}")
            ax.axhspan(mean - std, mean + std, color="black", alpha=0.1)
        group = [r for r in pruned if (r.data, r.model, r.epochs, r.init_sparsity) == panel]
        for i, method in enumerate(_methods({r.method for r in group})):
            line = sorted((r for r in group if r.method == method), key=lambda r: r.sparsity_target)
            x = [100 * (r.macs_mean if flops else r.sparsity_target) for r in line]
            ax.errorbar(
                x, [100 * r.accuracy_mean for r in line],
                yerr=[100 * r.accuracy_std for r in line], marker="o", capsize=3, label=method,
                linestyle=STYLES[i % len(STYLES)],
            )  # fmt: skip
        if flops:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.invert_xaxis()  # left to right: fewer MACs, as sparsity grows on the other plot
        else:
            ax.set_xticks(sorted({100 * r.sparsity_target for r in group}))
        ax.set(
            xlabel="remaining MACs per sample (% of dense)" if flops else "target sparsity (%)",
            ylabel="test accuracy (%)",
            title=f"{data}, {model}, {epochs} ep, {_start(init)}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(figure, path)


def _highest(runs: list[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    """Per start: the pruned runs at that start's highest target sparsity."""
    by_start: dict[float, list[dict[str, Any]]] = {}
    for run in runs:
        if run["method"] != "dense":
            by_start.setdefault(run["init_sparsity"], []).append(run)
    return {
        init: [r for r in group if r["sparsity_target"] == max(g["sparsity_target"] for g in group)]
        for init, group in sorted(by_start.items())
    }


def _schedule(path: str, runs: list[dict[str, Any]]) -> None:
    starts = _highest(runs)
    figure, axes = _panels(max(1, len(starts)))
    for ax, (init, group) in zip(axes, starts.items()):
        for i, method in enumerate(_methods({r["method"] for r in group})):
            run = min((r for r in group if r["method"] == method), key=lambda r: r["seed"])
            steps, sparsity = zip(*run["trace"])
            style = {"linestyle": STYLES[i % len(STYLES)], "linewidth": 2.5 - 0.4 * (i % len(STYLES))}
            ax.step(steps, [100 * s for s in sparsity], where="post", label=method, **style)
        target = 100 * group[0]["sparsity_target"]
        ax.set(xlabel="optimizer step", ylabel="sparsity (%)", title=f"schedule to {target:g}%, {_start(init)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(figure, path)


def _layers(path: str, runs: list[dict[str, Any]]) -> None:
    starts = _highest(runs)
    figure, axes = _panels(max(1, len(starts)), width=7.0)
    for ax, (init, group) in zip(axes, starts.items()):
        methods = _methods({r["method"] for r in group})
        layers = list(group[0]["layers"])
        width = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            chosen = [r for r in group if r["method"] == method]
            density = [100 * statistics.fmean(r["layers"][n]["density"] for r in chosen) for n in layers]
            ax.bar([j + i * width for j in range(len(layers))], density, width, label=method)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))])
        names = [n.removesuffix(".weight") + ("" if group[0]["layers"][n]["prunable"] else " (dense)") for n in layers]
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_yscale("log")
        target = 100 * group[0]["sparsity_target"]
        ax.set(ylabel="kept weights (%)", title=f"per-layer density at {target:g}% sparsity, {_start(init)}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    _save(figure, path)
