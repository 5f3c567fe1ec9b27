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
    "GraNet",
    "GLOBAL_MP_RULES",
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
    (|A| - k))``), "reserve" (per tensor, ``active_l - min(M, active_l)``: GlobalMP's
    minimum threshold, selected within each tensor), "gupta" (GlobalMP's ``rule="gupta"``: per
    tensor, the counts of the authors' clamp-and-redistribute rule, selected within each tensor)
    or "regrow" (GraNet: after the other stages, per tensor ``ceil(rate * kept_l)`` more kept
    entries are pruned by this score's smallest and as many pruned entries regrown by the largest
    |g|; run by ``selection.regrow``, not by ``prune_group``).
    """

    score: str
    size: str = "k"

    @property
    def per_tensor(self) -> bool:
        return self.size in ("reserve", "gupta")


class Method:
    """Base class. ``name`` is the method's name in configs and results."""

    name = "method"
    needs_grads = False
    regrows = False  # True: an event may turn pruned entries back on (GraNet)

    def plan(self) -> tuple[Stage, ...]:
        """The stages of this method's selection (value-independent)."""
        return (Stage(self.score),)  # type: ignore[attr-defined]

    def rate_at(self, step: int | None) -> float:
        """The host float64 rate of "pool"/"extra" stages at ``step`` (0.0 when unused)."""
        return 0.0

    def reserve_count(self, n_total: int) -> int:
        """Entries each tensor keeps in a "reserve" stage, for ``n_total`` prunable entries."""
        return 0

    def event_rate(self, step: int | None) -> float:
        """The float64 the selection receives as its rate at ``step`` (``rate_at``, except where a
        method needs another form of it, e.g. GraNet's negated rate)."""
        return self.rate_at(step)

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


GLOBAL_MP_RULES = ("reserve", "gupta")


class GlobalMP(Method):
    """Global magnitude pruning with a minimum threshold M (Gupta et al. 2022, "MT").

    ``rule="reserve"`` (default, fggp's own rule, not the authors'): each tensor first reserves
    ``min(M, active_l)`` entries, its largest |w| (ties to the higher index); the ``k`` smallest
    |w| among the rest are pruned, over all tensors. Exactly ``k`` are pruned.

    ``rule="gupta"``: the authors' procedure (``prune_withMT.py``) in exact integer arithmetic:
    global magnitude pruning gives per-tensor counts ``c_l``; tensors with at most M active
    entries stay as they are; a tensor that would keep fewer than M is clamped to keep exactly
    M, and the clamped tensors' shortfall goes to the others in proportion to ``c_l``, repeated
    until no tensor changes; then each tensor prunes ``floor(c_l * R / C)`` (their per-layer
    ``int()``) by its own smallest |w|. The total can fall short of ``k`` by less than one per
    tensor. An infeasible M raises ``UnreachableTargetError`` (the authors' loop never ends).

    ``min_keep`` M: an int count per tensor, or a float in (0, 1) read as a fraction of N
    (``floor(min_keep * N)``; the authors' ``--min-threshold`` is a percentage: 0.05 % is
    ``min_keep=0.0005``). Global MP never empties a tensor: an M below 1 acts as 1. Meant for
    global scope.
    """

    name = "global_mp"
    score = "magnitude"

    def __init__(self, min_keep: int | float = 0, rule: str = "reserve") -> None:
        if isinstance(min_keep, bool) or not isinstance(min_keep, numbers.Real) or not min_keep >= 0:  # NaN too
            raise ConfigError("min_keep", min_keep, "a count >= 0 or a fraction of N in [0, 1)")
        if not isinstance(min_keep, numbers.Integral) and min_keep >= 1:
            raise ConfigError("min_keep", min_keep, "a float min_keep is a fraction of N and must be < 1")
        if rule not in GLOBAL_MP_RULES:
            raise ConfigError("rule", rule, f"must be one of {GLOBAL_MP_RULES}")
        self.min_keep = min_keep
        self.rule = rule

    def plan(self) -> tuple[Stage, ...]:
        if self.rule == "gupta":
            return (Stage("magnitude", "gupta"),)
        return (Stage("magnitude", "reserve"), Stage("magnitude"))

    def reserve_count(self, n_total: int) -> int:
        if isinstance(self.min_keep, numbers.Integral):
            return max(1, int(self.min_keep))
        return max(1, int(self.min_keep * n_total))  # floor: both are >= 0

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "min_keep": self.min_keep}
        if self.rule != "reserve":  # configs saved before the option existed stay equal
            config["rule"] = self.rule
        return config


class GraNet(Method):
    """GraNet (Liu et al., NeurIPS 2021; VITA-Group/GraNet ``sparselearning/core.py``).

    At each event: prune by magnitude to the schedule's target (the pruner's scope), then per
    tensor remove ``ceil(r(t) * kept_l)`` more kept entries by smallest |w| and regrow as many
    among all of that tensor's pruned entries (those just removed included) by largest |g|,
    ties to the lower index. Counts after the event are exact; masks may gain entries. Regrown
    weights are 0 (they were pruned) and so is their optimizer state; then they train.
    ``r(t) = minimum + (initial - minimum) * (1 + cos(pi * t / total_steps)) / 2`` (GraNet's
    ``CosineDecay``, stepped once per optimizer step; defaults 0.5 and 0.005). ``total_steps``:
    the run's optimizer steps (GraNet: ``len(loader) * epochs``).
    """

    name = "granet"
    score = "magnitude"
    needs_grads = True
    regrows = True

    def __init__(self, total_steps: int, initial: float = 0.5, minimum: float = 0.005) -> None:
        self.rate = CosineRate(initial, minimum, check_int("total_steps", total_steps, 1))
        if self.rate.minimum > self.rate.initial:
            raise ConfigError("minimum", minimum, f"must be <= initial={initial} (the rate decays)")

    def plan(self) -> tuple[Stage, ...]:
        return (Stage("magnitude"), Stage("gradient", "regrow"))

    def rate_at(self, step: int | None) -> float:
        return self.rate(step)

    def event_rate(self, step: int | None) -> float:
        # Negated: the backends' floor_mul(-r, n) = -ceil(r * n) gives GraNet's math.ceil exactly.
        return -self.rate(step)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name, "total_steps": self.rate.total_steps,
            "initial": self.rate.initial, "minimum": self.rate.minimum,
        }


_METHODS = {cls.name: cls for cls in (Magnitude, Gradient, Taylor, Random, FGGP, GlobalMP, GraNet)}


def method_from_config(config: dict[str, Any]) -> Method:
    """Rebuild a method from ``to_config()`` output."""
    config = dict(config)
    name = config.pop("name", None)
    if name == TwoStage.name:
        return TwoStage(**config)
    if name not in _METHODS:
        raise ConfigError("method", name, f"must be one of {sorted([*_METHODS, TwoStage.name])}")
    return _METHODS[name](**config)
