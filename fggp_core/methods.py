"""Pruning methods: which scores, in which order, with how large a pool.

A method is plain configuration. ``plan()`` is its selection as a fixed sequence of ``Stage``s,
each keeping the ``size`` smallest-score entries of the previous stage's survivors (the first
stage starts from the active set); the last stage's size is always ``k``, the count to prune.
Sizes are named, not computed here: ``selection.py`` evaluates them on the backend from
``k``, the active count and the host rate ``rate_at(step)``, so one plan runs eagerly and under
``jax.jit``. The plan never depends on values, only on the configuration.

Scores: ``"magnitude"`` = |w|, ``"gradient"`` = |g|, ``"taylor"`` = |w * g|, ``"random"`` = a
uniform draw from ``np.random.default_rng([seed, step])`` on the host (float32).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .schedule import CosineRate, FixedRate, check_fraction, check_int, rate_from_config

__all__ = [
    "Method",
    "Magnitude",
    "Gradient",
    "Taylor",
    "Random",
    "TwoStage",
    "FGGP",
    "GlobalMP",
    "method_from_config",
    "SCORES",
    "Stage",
]

SCORES = ("magnitude", "gradient", "taylor")
Rate = FixedRate | CosineRate


@dataclass(frozen=True)
class Stage:
    """One selection stage: keep the ``size`` smallest ``score`` entries of the candidates.

    ``score``: "magnitude", "gradient", "taylor" or "random". ``size``: "k" (the count to
    prune), "pool" (``min(max(k, floor(rate * |A|)), |A|)``), "extra" (``k + floor(rate *
    (|A| - k))``) or "reserve" (per tensor, ``active_l - min(M, active_l)``: GlobalMP's
    minimum threshold, selected within each tensor).
    """

    score: str
    size: str = "k"

    @property
    def per_tensor(self) -> bool:
        return self.size == "reserve"


class Method:
    """Base class. ``name`` is the method's name in configs and results."""

    name = "method"
    needs_grads = False

    def plan(self) -> tuple[Stage, ...]:
        """The stages of this method's selection (value-independent)."""
        return (Stage(self.score),)  # type: ignore[attr-defined]

    def rate_at(self, step: int | None) -> float:
        """The host float64 rate of "pool"/"extra" stages at ``step`` (0.0 when unused)."""
        return 0.0

    def reserve_count(self, n_total: int) -> int:
        """Entries each tensor keeps in a "reserve" stage, for ``n_total`` prunable entries."""
        return 0

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Method) and self.to_config() == other.to_config()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Magnitude(Method):
    """Gradual magnitude pruning (GMP): prune the smallest |w|."""

    name = "magnitude"
    score = "magnitude"


class Gradient(Method):
    """Prune the smallest |g| (the gradient of the latest backward pass)."""

    name = "gradient"
    score = "gradient"
    needs_grads = True


class Taylor(Method):
    """Prune the smallest first-order Taylor saliency |w * g|."""

    name = "taylor"
    score = "taylor"
    needs_grads = True


class Random(Method):
    """Prune uniformly at random; the draw at an event depends only on ``(seed, step)``."""

    name = "random"
    score = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = check_int("seed", seed, 0)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed}


class TwoStage(Method):
    """Two criteria in sequence: a pool by ``first``, then the ``k`` to prune by ``second``.

    Exactly one of
    - ``pool_fraction`` r: pool size ``max(k, floor(r * |A|))`` clamped to ``|A|`` (FGGP's form);
    - ``extra_fraction`` r: pool size ``k + floor(r * (|A| - k))`` (GraNet's form);
    each a float in [0, 1], a ``FixedRate`` or a ``CosineRate`` (annealed over steps).
    """

    name = "two_stage"

    def __init__(
        self,
        first: str,
        second: str,
        pool_fraction: float | Rate | None = None,
        extra_fraction: float | Rate | None = None,
    ) -> None:
        for argument, value in (("first", first), ("second", second)):
            if value not in SCORES:
                raise ConfigError(argument, value, f"must be one of {SCORES}")
        if (pool_fraction is None) == (extra_fraction is None):
            raise ConfigError(
                "pool_fraction/extra_fraction", (pool_fraction, extra_fraction), "give exactly one of the two"
            )
        self.first, self.second = first, second
        self.pool_fraction = rate_from_config(pool_fraction)
        self.extra_fraction = rate_from_config(extra_fraction)
        self.needs_grads = "gradient" in (first, second) or "taylor" in (first, second)

    def rate_at(self, step: int | None) -> float:
        schedule = self.pool_fraction if self.pool_fraction is not None else self.extra_fraction
        return schedule(step)  # type: ignore[misc]

    def plan(self) -> tuple[Stage, ...]:
        return (Stage(self.first, "pool" if self.pool_fraction is not None else "extra"), Stage(self.second))

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "first": self.first, "second": self.second}
        if self.pool_fraction is not None:
            config["pool_fraction"] = self.pool_fraction.to_config()
        else:
            config["extra_fraction"] = self.extra_fraction.to_config()  # type: ignore[union-attr]
        return config


class FGGP(TwoStage):
    """Fixed-rate gradient-first gradual pruning (Zhu, Bezek, Goksel 2024).

    ``pool = smallest(|g|, max(k, floor(rate * |A|)), A)``, then ``smallest(|w|, k, pool)``.
    ``rate`` in [0, 1] (default 0.5): 0 is gradient pruning, 1 is magnitude pruning.
    """

    name = "fggp"

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = check_fraction("rate", rate)
        super().__init__("gradient", "magnitude", pool_fraction=self.rate)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "rate": self.rate}


class GlobalMP(Method):
    """Global magnitude pruning with a minimum threshold (Gupta et al.).

    Each tensor first reserves ``min(M, active_l)`` entries, its largest |w| (ties to the
    higher index); the ``k`` smallest |w| among the rest are pruned, over all tensors.
    ``min_keep`` M: an int count per tensor, or a float in (0, 1) read as a fraction of N
    (``floor(min_keep * N)``). 0 disables the threshold. Meant for global scope.
    """

    name = "global_mp"
    score = "magnitude"

    def __init__(self, min_keep: int | float = 0) -> None:
        if isinstance(min_keep, bool) or not isinstance(min_keep, numbers.Real) or min_keep < 0:
            raise ConfigError("min_keep", min_keep, "a count >= 0 or a fraction of N in [0, 1)")
        if not isinstance(min_keep, numbers.Integral) and min_keep >= 1:
            raise ConfigError("min_keep", min_keep, "a float min_keep is a fraction of N and must be < 1")
        self.min_keep = min_keep

    def plan(self) -> tuple[Stage, ...]:
        return (Stage("magnitude", "reserve"), Stage("magnitude"))

    def reserve_count(self, n_total: int) -> int:
        if isinstance(self.min_keep, numbers.Integral):
            return int(self.min_keep)
        return int(self.min_keep * n_total)  # floor: both are >= 0

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "min_keep": self.min_keep}


_METHODS = {cls.name: cls for cls in (Magnitude, Gradient, Taylor, Random, FGGP, GlobalMP)}


def method_from_config(config: dict[str, Any]) -> Method:
    """Rebuild a method from ``to_config()`` output."""
    config = dict(config)
    name = config.pop("name", None)
    if name == TwoStage.name:
        return TwoStage(**config)
    if name not in _METHODS:
        raise ConfigError("method", name, f"must be one of {sorted([*_METHODS, TwoStage.name])}")
    return _METHODS[name](**config)
