"""The one pruning lifecycle every adapter drives: step counting, events, counts, masks, state.

Data flow at an event: the adapter counts a completed optimizer step (``advance``); when it
is an event, it hands over this step's weights and gradients (its own arrays, ``prune``);
the schedule says how many entries must be pruned (host float64 math, ``targets``); the
one selection algorithm (run by the adapter's backend, on its device) says which; the
pruner keeps the new masks and the adapter applies them to weights and optimizer state.
Adapters read the pruner's fields but never assign them. Jitted adapters (JAX) take the
whole event table at once (``event_table``) and run the same selection in their program.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import NUMPY, Backend
from .distribution import SparseStart, check_distribution, layer_targets, random_masks
from .errors import ConfigError, InputMismatchError, NonFiniteScoreError
from .methods import Method, method_from_config
from .schedule import Schedule, schedule_from_config
from .selection import SCOPES, select

__all__ = ["Pruner", "EventReport", "EventTable", "STATE_VERSION", "check_config", "targets", "event_table"]

STATE_VERSION = 1


def check_config(
    method: object, schedule: object, scope: object, distribution: object, sparse_start: object = None
) -> None:
    """The argument checks every entry point shares (Pruner, fggp.jax.wrap): a clear ConfigError."""
    if not isinstance(method, Method):
        raise ConfigError("method", method, "must be a fggp method such as FGGP(), Magnitude() or GlobalMP()")
    if not isinstance(schedule, Schedule):
        raise ConfigError("schedule", schedule, "must be a fggp schedule such as PolynomialSchedule(...)")
    if scope not in SCOPES:
        raise ConfigError("scope", scope, f"must be one of {SCOPES}")
    check_distribution(distribution)
    if sparse_start is not None and not isinstance(sparse_start, SparseStart):
        raise ConfigError("sparse_start", sparse_start, "must be None or SparseStart(sparsity, distribution, seed)")


def targets(
    schedule: Schedule,
    scope: str,
    distribution: str,
    shapes: Mapping[str, tuple[int, ...]],
    step: int,
    allow_empty: bool = False,
) -> list[int]:
    """Pruned entries per selection group once the event at ``step`` is done: one count under
    global scope (``round(N * s(t))``), one per tensor under layerwise scope (each keeping at
    least one entry unless ``allow_empty``: ``layer_targets``)."""
    sparsity = schedule.sparsity(step)
    if scope == "global":
        return [round(sum(math.prod(s) for s in shapes.values()) * sparsity)]
    if getattr(schedule, "layer_counts", False) and distribution == "uniform":  # TfmotPolynomialDecay's rounding
        return [schedule.target_pruned(step, math.prod(s)) for s in shapes.values()]
    return list(layer_targets(shapes, sparsity, distribution, allow_empty).values())


@dataclass(frozen=True)
class EventTable:
    """Every event of a run, for programs that cannot ask the host (``jax.jit``).

    ``steps``: int64 [E], the event steps >= 1. ``targets``: int64 [E, G], pruned entries per
    group after each event. ``rates``: float64 [E], the method's "pool"/"extra" rate.
    """

    steps: np.ndarray
    targets: np.ndarray
    rates: np.ndarray


def event_table(
    method: Method,
    schedule: Schedule,
    scope: str,
    distribution: str,
    shapes: Mapping[str, tuple[int, ...]],
    allow_empty: bool = False,
) -> EventTable:
    """The ``EventTable`` of ``schedule`` for tensors of ``shapes`` (host float64 math)."""
    steps = [t for t in schedule.events() if t >= 1]
    groups = 1 if scope == "global" else len(shapes)
    rows = [targets(schedule, scope, distribution, shapes, t, allow_empty) for t in steps]
    return EventTable(
        np.asarray(steps, np.int64),
        np.asarray(rows, np.int64).reshape(len(steps), groups),
        np.asarray([method.event_rate(t) for t in steps], np.float64),
    )


@dataclass(frozen=True)
class EventReport:
    """What one event did: plain data for loggers (``Pruner(on_event=...)``, the adapters' ``on_event``).

    ``step``: optimizer steps completed. ``target_sparsity``: the schedule's sparsity at ``step``.
    ``k``: the count asked for (an int, or per tensor under layerwise). ``pruned``/``total``:
    pruned and prunable entries after the event (``sparsity`` is their ratio, the reached
    sparsity). ``density``: tensor name -> kept fraction after the event. ``seconds``: wall time
    of the event (selection included, applying masks in the adapter excluded).
    """

    step: int
    target_sparsity: float
    k: int | dict[str, int]
    pruned: int
    total: int
    skipped: bool = False
    reason: str = ""
    density: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def sparsity(self) -> float:
        return self.pruned / self.total if self.total else 0.0


class Pruner:
    """Holds step, masks and configuration; decides events and runs the selection.

    ``method``: a method instance (``FGGP()``, ``Magnitude()``, ...). ``schedule``: a schedule
    instance. ``scope``: "global" (one selection over all tensors) or "layerwise".
    ``distribution``: per-layer targets under layerwise scope, "uniform" or "erk".
    ``skip_nonfinite``: on NaN/inf scores at an event, skip it with a warning and a report
    instead of raising ``NonFiniteScoreError``. ``exclude``: tensor names that stay dense; they
    are left out of the masks, the targets and the selection (e.g. the first convolution).
    ``backend``: where selection runs (``executor`` is its old name). ``on_event``: called with
    the ``EventReport`` after every event (skipped ones included), for loggers; an exception it
    raises becomes a ``RuntimeWarning`` (a failing logger must not leave masks half applied).
    ``allow_empty``: False (default) keeps at least one entry per tensor under layerwise scope
    (``min(round(n_l * s_l), n_l - 1)``); True allows pruning a tensor entirely. Under global
    scope ``GlobalMP`` never empties a tensor; other methods may, and an event that empties one
    warns (``layer_report()`` flags it as ``collapsed``).
    """

    def __init__(
        self,
        method: Method,
        schedule: Schedule,
        *,
        scope: str = "global",
        distribution: str = "uniform",
        skip_nonfinite: bool = False,
        exclude: Collection[str] = (),
        backend: Backend = NUMPY,
        executor: Backend | None = None,
        on_event: Callable[[EventReport], Any] | None = None,
        allow_empty: bool = False,
    ) -> None:
        check_config(method, schedule, scope, distribution)
        if not isinstance(allow_empty, bool):
            raise ConfigError("allow_empty", allow_empty, "must be True or False")
        self.allow_empty = allow_empty
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event", on_event, "must be None or a callable taking an EventReport")
        self.on_event = on_event
        self.method = method
        self.schedule = schedule
        self.scope = scope
        self.distribution = distribution
        self.skip_nonfinite = bool(skip_nonfinite)
        if isinstance(exclude, str):
            raise ConfigError("exclude", exclude, "must be a collection of tensor names, not one string")
        self.exclude = tuple(exclude)
        self.backend = executor if executor is not None else backend
        self.step = 0
        self.masks: dict[str, Any] = {}
        self.sparse_start: SparseStart | None = None
        self.last_event: EventReport | None = None

    # -- masks ---------------------------------------------------------------------------
    def init_masks(
        self, like: Mapping[str, Any], sparse_start: SparseStart | None = None, *, from_zeros: bool = False
    ) -> dict[str, Any]:
        """Create masks for the tensors in ``like`` (name -> array, canonical order).

        All True, or a seeded random mask when ``sparse_start`` is given; with ``from_zeros``
        the zeros of ``like`` count as pruned (joining a run in progress without its state).
        """
        unknown = [n for n in self.exclude if n not in like]
        if unknown:
            raise ConfigError("exclude", unknown, f"names must be among the prunable tensors {list(like)}")
        like = {n: t for n, t in like.items() if n not in self.exclude}
        if not like:
            raise InputMismatchError("no prunable tensors were given (or all are excluded)")
        check_config(self.method, self.schedule, self.scope, self.distribution, sparse_start)
        shapes = {n: self.backend.shape(t) for n, t in like.items()}
        host = (
            random_masks(shapes, sparse_start)
            if sparse_start is not None
            else {n: np.ones(s, dtype=bool) for n, s in shapes.items()}
        )
        if from_zeros and sparse_start is None:
            host = {n: np.asarray(self.backend.to_host(t)) != 0 for n, t in like.items()}
        self.masks = {n: self.backend.from_host(host[n], like=like[n]) for n in shapes}
        self.sparse_start = sparse_start
        return self.masks

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: self.backend.shape(m) for n, m in self.masks.items()}

    def pruned_counts(self) -> dict[str, int]:
        """Pruned entries per tensor."""
        be = self.backend
        kept = be.tally([be.count(be.flat(m)) for m in self.masks.values()], range(len(self.masks)))[0]
        return {n: math.prod(be.shape(m)) - int(c) for (n, m), c in zip(self.masks.items(), kept)}

    def sparsity(self) -> float:
        """Pruned fraction over all prunable entries."""
        total = sum(math.prod(s) for s in self.shapes.values())
        return sum(self.pruned_counts().values()) / total if total else 0.0

    def layer_report(self, pruned: Mapping[str, int] | None = None) -> dict[str, dict[str, float]]:
        """Per tensor: ``size``, ``pruned``, ``density`` (kept fraction) and ``collapsed`` (True when
        a non-empty tensor has no entry left: the layer passes nothing on). ``pruned``: the
        ``pruned_counts()`` of the current masks when the caller has them (saves a pass over the masks)."""
        pruned = self.pruned_counts() if pruned is None else pruned
        return {
            n: {
                "size": math.prod(s),
                "pruned": pruned[n],
                "density": 1.0 - pruned[n] / max(1, math.prod(s)),
                "collapsed": math.prod(s) > 0 and pruned[n] == math.prod(s),
            }
            for n, s in self.shapes.items()
        }

    # -- events --------------------------------------------------------------------------
    def event_k(self, step: int, pruned: Mapping[str, int] | None = None) -> int | dict[str, int]:
        """How many entries the event at ``step`` prunes, from the current masks (``pruned``: their counts)."""
        pruned = self.pruned_counts() if pruned is None else pruned
        goal = targets(self.schedule, self.scope, self.distribution, self.shapes, step, self.allow_empty)
        if self.scope == "global":
            return max(0, goal[0] - sum(pruned.values()))
        return {n: max(0, t - pruned[n]) for n, t in zip(self.masks, goal)}

    def event_table(self) -> EventTable:
        """Every event of the run at once (for jitted adapters); needs ``init_masks`` first."""
        return event_table(self.method, self.schedule, self.scope, self.distribution, self.shapes, self.allow_empty)

    def is_event(self, step: int | None = None) -> bool:
        """Whether a pruning event follows optimizer step ``step`` (default: the current step)."""
        return self.schedule.is_event(self.step if step is None else step)

    def advance(self) -> bool:
        """Count one completed optimizer step; True when an event follows it (call ``prune``)."""
        self.step += 1
        return self.schedule.is_event(self.step)

    def sync_step(self, step: int) -> None:
        """Follow an optimizer's own step counter (e.g. Keras ``optimizer.iterations`` on resume)."""
        if isinstance(step, bool) or int(step) != step or step < 0:
            raise ConfigError("step", step, "must be an integer >= 0 (completed optimizer steps)")
        self.step = int(step)

    def on_step(self, weights: Mapping[str, Any], grads: Mapping[str, Any] | None = None) -> EventReport | None:
        """Call once after every completed optimizer step; prunes when the step is an event.

        ``weights`` are the updated weights, ``grads`` this step's gradients (name -> array).
        Returns the event's report, or None when the step is no event. The step counts even
        when the event raises (the optimizer step did happen).
        """
        if not self.advance():
            return None
        return self.prune(weights, grads)

    def prune(self, weights: Mapping[str, Any], grads: Mapping[str, Any] | None = None) -> EventReport:
        """Run the event for the current step now (e.g. a one-shot event at step 0)."""
        if not self.masks:
            raise InputMismatchError("masks are not initialised: call init_masks() first")
        missing = [n for n in self.masks if n not in weights or (grads is not None and n not in grads)]
        if missing:
            raise InputMismatchError(f"weights/grads lack the prunable tensors {missing}")
        weights = {n: weights[n] for n in self.masks}  # excluded or extra tensors are not selected
        grads = None if grads is None else {n: grads[n] for n in self.masks}
        before = self.pruned_counts()  # counted once before and once after the selection: passes over all masks
        k = self.event_k(self.step, before)
        total = sum(math.prod(s) for s in self.shapes.values())
        target = self.schedule.sparsity(self.step)
        start = time.perf_counter()
        try:
            new = select(
                self.method, weights, grads, self.masks, k, scope=self.scope, step=self.step, backend=self.backend
            )
        except NonFiniteScoreError as error:
            if not self.skip_nonfinite:
                raise
            warnings.warn(f"fggp: event at step {self.step} skipped: {error}", RuntimeWarning, stacklevel=2)
            self.last_event = EventReport(
                self.step, target, k, sum(before.values()), total, skipped=True, reason=str(error),
                density=self._density(before),
                seconds=time.perf_counter() - start,
            )
            return self._report(self.last_event)
        collapsed = {n for n, r in self.layer_report(before).items() if r["collapsed"]}
        self.masks = new
        after = self.pruned_counts()
        self._warn_collapsed(collapsed, after)
        self.last_event = EventReport(
            self.step, target, k, sum(after.values()), total, density=self._density(after),
            seconds=time.perf_counter() - start,
        )
        return self._report(self.last_event)

    def _warn_collapsed(self, before: set[str], pruned: Mapping[str, int]) -> None:
        """A tensor emptied by this event (global scope) is said out loud, once."""
        report = self.layer_report(pruned)
        collapsed = [n for n, r in report.items() if r["collapsed"] and n not in before]
        if collapsed and not self.allow_empty:
            warnings.warn(
                f"fggp: the event at step {self.step} pruned every entry of {collapsed} (layer collapse); "
                "use GlobalMP(min_keep=...) or layerwise scope to keep every layer alive",
                RuntimeWarning, stacklevel=3,
            )

    def _density(self, pruned: Mapping[str, int]) -> dict[str, float]:
        return {n: r["density"] for n, r in self.layer_report(pruned).items()}

    def _report(self, report: EventReport) -> EventReport:
        if self.on_event is not None:
            try:
                self.on_event(report)
            except Exception as error:  # noqa: BLE001 - the event is done; the adapter still applies it
                warnings.warn(f"fggp: on_event raised {error!r} at step {report.step}", RuntimeWarning, stacklevel=3)
        return report

    # -- state ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "method": self.method.to_config(),
            "schedule": self.schedule.to_config(),
            "scope": self.scope,
            "distribution": self.distribution,
            "skip_nonfinite": self.skip_nonfinite,
            "exclude": list(self.exclude),
            "allow_empty": self.allow_empty,
            "sparse_start": None if self.sparse_start is None else self.sparse_start.to_config(),
        }

    def state_dict(self, host: bool = True) -> dict[str, Any]:
        """Plain data: numbers, strings, dicts and NumPy bool arrays (safe to save anywhere).

        ``host=False`` keeps the masks as the backend's arrays (e.g. sharded DTensors for
        ``torch.distributed.checkpoint``, which saves and reshards them without gathering)."""
        return {
            "version": STATE_VERSION,
            "step": self.step,
            "masks": {
                n: np.array(self.backend.to_host(m), dtype=bool) if host else m for n, m in self.masks.items()
            },
            "config": self.config(),
        }

    def load_state_dict(self, state: Mapping[str, Any], host: bool = True) -> None:
        """Restore step and masks. The configuration must equal this pruner's (else ConfigError).

        Everything is checked before anything is applied (version, configuration, step, mask
        names, shapes and dtype): a state that fails a check raises and changes nothing.
        ``host=False``: the masks are the backend's own bool arrays (``state_dict(host=False)``)."""
        step, masks = self._check_state(state, host)
        like = self.masks or {n: np.asarray(m) for n, m in masks.items()}
        new = {
            n: self.backend.from_host(np.asarray(masks[n], dtype=bool) if host else masks[n], like=like[n])
            for n in like
        }
        self.masks, self.step = new, step  # applied together, after every check passed

    def _check_state(self, state: object, host: bool) -> tuple[int, Mapping[str, Any]]:
        """The step and masks of ``state`` once every check passed (nothing is changed here)."""
        if not isinstance(state, Mapping):
            raise ConfigError("state", type(state).__name__, "must be a dict from state_dict()")
        if state.get("version") != STATE_VERSION:
            raise ConfigError("state['version']", state.get("version"), f"this fggp reads version {STATE_VERSION}")
        if not isinstance(state.get("config"), Mapping):
            raise ConfigError("state['config']", state.get("config"), "must be the configuration dict of state_dict()")
        config = dict(state["config"])
        mine = self.config()
        # A resumed run may have been set up without a sparse start; the masks carry it.
        config.pop("sparse_start", None)
        mine.pop("sparse_start", None)
        config.setdefault("allow_empty", False)  # states saved before the switch existed
        if config != mine:
            diff = sorted(key for key in mine if mine[key] != config.get(key))
            raise ConfigError("state['config']", {k: config.get(k) for k in diff}, f"must match this pruner's {diff}")
        step = state.get("step")
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise ConfigError("state['step']", step, "must be an integer >= 0 (completed optimizer steps)")
        masks = state.get("masks")
        if not isinstance(masks, Mapping):
            raise ConfigError("state['masks']", masks, "must map each prunable tensor's name to its bool mask")
        if self.masks and set(masks) != set(self.masks):
            raise InputMismatchError(f"state masks {sorted(masks)} differ from the pruner's {sorted(self.masks)}")
        for n, m in masks.items():
            try:
                shape = tuple(np.shape(m) if host else self.backend.shape(m))
            except ValueError as error:  # e.g. ragged nested lists
                raise InputMismatchError(f"state mask {n!r} is not an array: {error}") from None
            if self.masks and shape != self.shapes[n]:
                raise InputMismatchError(f"state mask {n!r} has shape {shape}, expected {self.shapes[n]}")
            dtype = np.asarray(m).dtype if host else None
            if host and dtype != np.bool_:
                raise InputMismatchError(f"state mask {n!r} has dtype {dtype}; masks must be bool (True = kept)")
        return int(step), masks

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], backend: Backend = NUMPY) -> Pruner:
        """Rebuild a pruner from a state dict alone (not for callable schedules)."""
        config = state["config"]
        pruner = cls(
            method_from_config(config["method"]),
            schedule_from_config(config["schedule"]),
            scope=config["scope"],
            distribution=config["distribution"],
            skip_nonfinite=config["skip_nonfinite"],
            exclude=config["exclude"],
            allow_empty=config.get("allow_empty", False),
            backend=backend,
        )
        pruner.load_state_dict(state)
        return pruner
