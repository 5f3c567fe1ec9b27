"""When to prune and how much: sparsity schedules and rate schedules (host-side float64 math).

The step ``t`` counts completed optimizer steps (``t == 1`` right after the first step).
An event happens at every ``t`` with ``begin_step <= t <= end_step`` and
``(t - begin_step) % frequency == 0``, and always at ``t == end_step`` so the final sparsity is
reached exactly. The number of entries pruned after an event is ``round(n * sparsity(t))``
(Python's round: half to even, on a float64).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = [
    "Schedule",
    "PolynomialSchedule",
    "OneShotSchedule",
    "CallableSchedule",
    "TfmotPolynomialDecay",
    "FixedRate",
    "CosineRate",
    "schedule_from_config",
    "rate_from_config",
]


def check_sparsity(argument: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ConfigError(argument, value, "a sparsity must be a number in [0, 1)")
    return float(value)


def check_int(argument: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(argument, value, f"must be an integer >= {minimum}")
    return int(value)


def check_fraction(argument: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ConfigError(argument, value, "must be a number in [0, 1]")
    return float(value)


class Schedule:
    """Event rules shared by every sparsity schedule; subclasses define ``sparsity(step)``."""

    def __init__(self, begin_step: int, end_step: int, frequency: int) -> None:
        self.begin_step = check_int("begin_step", begin_step, 0)
        self.end_step = check_int("end_step", end_step, 0)
        if self.end_step <= self.begin_step:
            raise ConfigError("end_step", end_step, f"must be greater than begin_step={begin_step}")
        self.frequency = check_int("frequency", frequency, 1)

    def sparsity(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_event(self, step: int) -> bool:
        """True when a pruning event happens after the ``step``-th optimizer step."""
        if not self.begin_step <= step <= self.end_step:
            return False
        return step == self.end_step or (step - self.begin_step) % self.frequency == 0

    def events(self) -> list[int]:
        """Every event step, in order."""
        steps = list(range(self.begin_step, self.end_step + 1, self.frequency))
        if steps[-1] != self.end_step:
            steps.append(self.end_step)
        return steps

    def target_pruned(self, step: int, n: int) -> int:
        """How many of ``n`` entries are pruned once the event at ``step`` is done."""
        return round(n * self.sparsity(step))

    def to_config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_config() == other.to_config()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class PolynomialSchedule(Schedule):
    """Zhu & Gupta's schedule: ``s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power``.

    Sparsities are fractions in [0, 1); steps count completed optimizer steps. Before
    ``begin_step`` the sparsity is ``initial_sparsity``, after ``end_step`` it is
    ``final_sparsity``. ``power=3`` is the cubic schedule, ``power=1`` the linear one.
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        frequency: int,
        power: float = 3,
    ) -> None:
        self.initial_sparsity = check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = check_sparsity("final_sparsity", final_sparsity)
        if self.final_sparsity < self.initial_sparsity:
            raise ConfigError(
                "final_sparsity", final_sparsity,
                f"must be >= initial_sparsity={initial_sparsity} (masks only shrink)",
            )
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not 0 < power < math.inf:
            raise ConfigError("power", power, "must be a finite number > 0")
        self.power = power
        super().__init__(begin_step, end_step, frequency)

    def sparsity(self, step: int) -> float:
        t = min(max(step, self.begin_step), self.end_step)
        progress = (t - self.begin_step) / (self.end_step - self.begin_step)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "polynomial",
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
            "power": self.power,
        }


class OneShotSchedule(Schedule):
    """Prune to ``sparsity`` in a single event after optimizer step ``step`` (Global MP's use).

    The sparsity is 0 before ``step`` and ``sparsity`` from it on. ``step=0`` (the default)
    prunes before the first optimizer update, on every adapter: PyTorch at the start of the
    first ``optimizer.step()`` (or ``prune_now()``), Keras at ``on_train_begin``, JAX in
    ``init``. Keras and JAX have no gradients there, so they refuse gradient methods with
    ``step=0`` (``ConfigError``); PyTorch scores the first step's gradients.
    """

    def __init__(self, sparsity: float, step: int = 0) -> None:
        self.target = check_sparsity("sparsity", sparsity)
        step = check_int("step", step, 0)
        self.begin_step = self.end_step = step
        self.frequency = 1

    def sparsity(self, step: int) -> float:
        return self.target if step >= self.end_step else 0.0

    def is_event(self, step: int) -> bool:
        return step == self.end_step

    def to_config(self) -> dict[str, Any]:
        return {"name": "one_shot", "sparsity": self.target, "step": self.end_step}


class CallableSchedule(Schedule):
    """A user function ``fn(step) -> sparsity`` with the standard event rules.

    The function is called on the host at events only; it must return a number in [0, 1).
    It is not saved in state dicts (no code is pickled): pass the same schedule when resuming.
    """

    def __init__(self, fn: Callable[[int], float], begin_step: int, end_step: int, frequency: int) -> None:
        if not callable(fn):
            raise ConfigError("fn", fn, "must be a callable step -> sparsity")
        self.fn = fn
        super().__init__(begin_step, end_step, frequency)

    def sparsity(self, step: int) -> float:
        return check_sparsity(f"fn({step})", self.fn(step))

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "callable",
            "fn": getattr(self.fn, "__qualname__", repr(self.fn)),
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallableSchedule) and self.fn is other.fn and self.to_config() == other.to_config()


class TfmotPolynomialDecay(Schedule):
    """tensorflow-model-optimization's ``PolynomialDecay``, event for event and count for count.

    Same arguments, in tfmot's order (``power`` before ``frequency``). Differences from
    ``PolynomialSchedule``, all as tfmot computes them: the sparsity is float32 math
    (``p = clip(float32(t - t0) / float32(t1 - t0), 0, 1)``, ``s = float32(s_i - s_f) * (1 - p)
    ** power + s_f``); events happen only at ``t0 + j * frequency <= t1`` (not always at
    ``t1``); each tensor keeps ``max(1, round_half_even(float32(n) * (1 - s)))`` entries. The
    counts are per tensor, so use it with ``scope="layerwise"`` (uniform distribution) and
    ``Magnitude()`` to reproduce ``prune_low_magnitude``; under global scope the total is
    ``round(N * s)``. tfmot's step ``t`` (``UpdatePruningStep``: optimizer iterations before a
    batch) prunes the weights after ``t`` optimizer steps, as fggp's event after step ``t`` does.
    ``constant(s, begin_step)`` stands for tfmot's ``ConstantSparsity``.
    """

    layer_counts = True  # fggp_core.pruner.targets asks target_pruned per tensor (layerwise, uniform)

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ) -> None:
        self.initial_sparsity = check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = check_sparsity("final_sparsity", final_sparsity)
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not math.isfinite(power):
            raise ConfigError("power", power, "must be a finite number")
        self.power = power
        super().__init__(begin_step, end_step, frequency)

    @classmethod
    def constant(cls, target_sparsity: float, begin_step: int = 0) -> TfmotPolynomialDecay:
        """tfmot's ``ConstantSparsity(target_sparsity, begin_step)``: prune to the target at
        ``begin_step``; tfmot's later events (every ``frequency``) re-select the same mask."""
        return cls(target_sparsity, target_sparsity, begin_step, begin_step + 1, frequency=1)

    def sparsity(self, step: int) -> float:
        f32 = np.float32
        p = f32(step - self.begin_step) / f32(self.end_step - self.begin_step)
        p = min(f32(1.0), max(f32(0.0), p))
        s = f32(self.initial_sparsity - self.final_sparsity) * (f32(1.0) - p) ** f32(self.power)
        return float(s + f32(self.final_sparsity))

    def is_event(self, step: int) -> bool:
        return self.begin_step <= step <= self.end_step and (step - self.begin_step) % self.frequency == 0

    def events(self) -> list[int]:
        return list(range(self.begin_step, self.end_step + 1, self.frequency))

    def target_pruned(self, step: int, n: int) -> int:
        kept = np.round(np.float32(n) * (np.float32(1.0) - np.float32(self.sparsity(step))))
        return max(0, n - max(1, int(kept)))

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "tfmot_polynomial_decay",
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


def schedule_from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from ``to_config()`` output (callable schedules cannot be rebuilt)."""
    config = dict(config)
    name = config.pop("name", None)
    if name == "polynomial":
        return PolynomialSchedule(**config)
    if name == "one_shot":
        return OneShotSchedule(**config)
    if name == "tfmot_polynomial_decay":
        return TfmotPolynomialDecay(**config)
    raise ConfigError("schedule config name", name, "must be 'polynomial' or 'one_shot' (callables are not stored)")


class FixedRate:
    """A constant rate ``r`` in [0, 1] (FGGP's fixed subselection rate)."""

    def __init__(self, rate: float) -> None:
        self.rate = check_fraction("rate", rate)

    def __call__(self, step: int | None) -> float:
        return self.rate

    def to_config(self) -> dict[str, Any]:
        return {"name": "fixed", "rate": self.rate}

    def __repr__(self) -> str:
        return f"FixedRate({self.rate!r})"


class CosineRate:
    """GraNet's annealed rate: ``r(t) = r_min + (r0 - r_min) * (1 + cos(pi * t / total_steps)) / 2``.

    ``t`` is clipped to ``[0, total_steps]``. Rates are fractions in [0, 1].
    """

    def __init__(self, initial: float = 0.5, minimum: float = 0.005, total_steps: int = 1) -> None:
        self.initial = check_fraction("initial", initial)
        self.minimum = check_fraction("minimum", minimum)
        self.total_steps = check_int("total_steps", total_steps, 1)

    def __call__(self, step: int | None) -> float:
        if step is None:
            raise ConfigError("step", step, "an annealed rate needs the current step (an integer >= 0)")
        t = min(max(step, 0), self.total_steps)
        return self.minimum + (self.initial - self.minimum) * (1.0 + math.cos(math.pi * t / self.total_steps)) / 2.0

    def to_config(self) -> dict[str, Any]:
        return {"name": "cosine", "initial": self.initial, "minimum": self.minimum, "total_steps": self.total_steps}

    def __repr__(self) -> str:
        return f"CosineRate({self.initial!r}, {self.minimum!r}, {self.total_steps!r})"


def rate_from_config(config: dict[str, Any] | float | None) -> FixedRate | CosineRate | None:
    if config is None or isinstance(config, (FixedRate, CosineRate)):
        return config
    if isinstance(config, numbers.Real) and not isinstance(config, bool):
        return FixedRate(config)
    if isinstance(config, dict):
        config = dict(config)
        name = config.pop("name", None)
        if name == "fixed":
            return FixedRate(**config)
        if name == "cosine":
            return CosineRate(**config)
    raise ConfigError("rate", config, "a float in [0, 1], FixedRate or CosineRate")
