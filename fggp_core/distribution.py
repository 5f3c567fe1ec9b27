"""Per-layer sparsity targets (layerwise scope) and the seeded random initial mask (sparse start).

``uniform``: every tensor at the global sparsity. ``erk``: RigL's Erdős–Rényi-Kernel densities,
``density_l ∝ sum(shape_l) / prod(shape_l)``, scaled so the total number of kept entries
matches, with tensors that would exceed density 1 capped dense and the rest rescaled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .schedule import check_int, check_sparsity

__all__ = ["DISTRIBUTIONS", "layer_sparsities", "layer_targets", "SparseStart", "random_masks"]

DISTRIBUTIONS = ("uniform", "erk")
Shapes = Mapping[str, tuple[int, ...]]


def check_distribution(value: object) -> str:
    if value not in DISTRIBUTIONS:
        raise ConfigError("distribution", value, f"must be one of {DISTRIBUTIONS}")
    return value  # type: ignore[return-value]


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def layer_sparsities(shapes: Shapes, sparsity: float, distribution: str = "uniform") -> dict[str, float]:
    """Per-tensor sparsities whose entry-weighted mean is ``sparsity`` (exactly for uniform)."""
    check_distribution(distribution)
    if distribution == "uniform" or sparsity == 0.0:
        return {n: sparsity for n in shapes}
    sizes = {n: _size(s) for n, s in shapes.items()}
    raw = {n: sum(s) / sizes[n] if sizes[n] else 0.0 for n, s in shapes.items()}
    kept = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense and sizes[n]]
        budget = kept - sum(sizes[n] for n in dense)
        weight = sum(raw[n] * sizes[n] for n in free)
        eps = budget / weight if weight else 0.0
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 0.0 if n in dense else max(0.0, 1.0 - eps * raw[n]) for n in shapes}


def layer_targets(
    shapes: Shapes, sparsity: float, distribution: str = "uniform", allow_empty: bool = False
) -> dict[str, int]:
    """Per-tensor pruned counts ``min(round(n_l * s_l), n_l - 1)``: every non-empty tensor keeps at
    least one entry (as tensorflow-model-optimization and jaxpruner do; a deviation from plain
    ``round(n_l * s_l)``, which empties a 2-entry tensor from 75 %). ``allow_empty=True``: plain
    ``round(n_l * s_l)``, a tensor may be pruned entirely."""
    out = {}
    for n, s in layer_sparsities(shapes, sparsity, distribution).items():
        size = _size(shapes[n])
        out[n] = round(size * s) if allow_empty else min(round(size * s), max(size - 1, 0))
    return out


@dataclass(frozen=True)
class SparseStart:
    """Start training sparse: a random mask at ``sparsity`` (in [0, 1)) drawn on the host.

    ``distribution`` is "uniform" or "erk" (the papers' 50 % sparse start uses ERK); the draw
    depends only on ``seed`` and the tensor shapes.
    """

    sparsity: float
    distribution: str = "erk"
    seed: int = 0

    def __post_init__(self) -> None:
        check_sparsity("sparse_start.sparsity", self.sparsity)
        check_distribution(self.distribution)
        check_int("sparse_start.seed", self.seed, 0)

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


def random_masks(shapes: Shapes, start: SparseStart) -> dict[str, np.ndarray]:
    """Boolean masks with exactly ``layer_targets(...)`` entries pruned per tensor, at random."""
    from .backend import NUMPY
    from .selection import smallest

    rng = np.random.default_rng(start.seed)
    masks = {}
    for name, target in layer_targets(shapes, start.sparsity, start.distribution).items():
        n = _size(shapes[name])
        keys = NUMPY.host_keys(rng.random(n, dtype=np.float32), None)
        pruned = smallest(NUMPY, [keys], np.int64(target), "float32")[0]
        masks[name] = (~pruned).reshape(shapes[name])
    return masks
