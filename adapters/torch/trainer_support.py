"""What the Trainer (fggp.transformers) and Lightning (fggp.lightning) callbacks share.

``FrameworkPruning`` holds the user's configuration, attaches ``fggp.torch.attach`` to the
optimizer a training framework created, carries pruning state across re-attachment and
checkpoints, and caches the reached sparsity (it only changes at events) so logging it every
step costs no device synchronisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from fggp_core.distribution import SparseStart
from fggp_core.errors import ConfigError
from fggp_core.methods import Method
from fggp_core.pruner import EventReport, Pruner, check_config
from fggp_core.schedule import Schedule

from .params import PrunableSpec
from .pruner import TorchPruner, attach

__all__ = ["FrameworkPruning", "PruningAccess", "unwrap_optimizer"]


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside framework wrappers (accelerate's ``AcceleratedOptimizer``,
    Lightning's ``LightningOptimizer``): the one whose ``step`` really updates the weights."""
    seen = 0
    while not _is_plain(optimizer) and isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer, seen = optimizer.optimizer, seen + 1
        if seen > 8:
            break
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError("optimizer", type(optimizer).__name__, "must be (or wrap) one torch.optim.Optimizer")
    return optimizer


def _is_plain(optimizer: Any) -> bool:
    wrapper = type(optimizer).__name__ in ("AcceleratedOptimizer", "LightningOptimizer")
    return isinstance(optimizer, torch.optim.Optimizer) and not wrapper


class FrameworkPruning:
    """Configuration plus the attached ``TorchPruner``; see the framework callbacks for arguments."""

    def __init__(
        self,
        method: Method,
        schedule: Schedule,
        *,
        scope: str = "global",
        prunable: PrunableSpec = None,
        sparse_start: SparseStart | None = None,
        distribution: str = "uniform",
        skip_nonfinite: bool = False,
        on_event: Callable[[EventReport], Any] | None = None,
    ) -> None:
        check_config(method, schedule, scope, distribution, sparse_start)
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event", on_event, "must be None or a callable taking an EventReport")
        self.method, self.schedule, self.scope, self.distribution = method, schedule, scope, distribution
        self.prunable, self.sparse_start, self.skip_nonfinite = prunable, sparse_start, skip_nonfinite
        self.on_event = on_event
        self.pruner: TorchPruner | None = None
        self.events: list[EventReport] = []
        self._pending: Mapping[str, Any] | None = None  # a state to apply at the next attach
        self._sparsity = 0.0

    # -- what the user reads -------------------------------------------------------------
    def sparsity(self) -> float:
        """Pruned fraction of the prunable entries (0.0 before training starts)."""
        return self._sparsity

    def layer_report(self) -> dict[str, dict[str, float]]:
        """Per parameter: ``size``, ``pruned`` and ``density`` (empty before training starts)."""
        return {} if self.pruner is None else self.pruner.layer_report()

    @property
    def step(self) -> int:
        """Completed optimizer steps counted by the pruner."""
        return 0 if self.pruner is None else self.pruner.step

    # -- attaching -----------------------------------------------------------------------
    def _attach(self, model: nn.Module, optimizer: Any) -> TorchPruner:
        """Attach to ``optimizer`` (unwrapped); state of an earlier attachment or a checkpoint carries over."""
        inner = unwrap_optimizer(optimizer)
        if self.pruner is not None and self.pruner.optimizer is inner and self.pruner.model is model:
            if not self.pruner.attached:
                self.pruner = self._reattach(model, inner, self.pruner.state_dict())
        else:
            carried = None if self.pruner is None else self.pruner.state_dict()
            if self.pruner is not None:
                self.pruner.remove()
            self.pruner = self._reattach(model, inner, carried)
        if self._pending is not None:
            self.pruner.load_state_dict(self._pending)
            self._pending = None
        self._sparsity = self.pruner.sparsity()
        return self.pruner

    def _reattach(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: Any) -> TorchPruner:
        pruner = attach(
            model, optimizer, self.method, self.schedule, scope=self.scope, prunable=self.prunable,
            sparse_start=None if state is not None else self.sparse_start, distribution=self.distribution,
            skip_nonfinite=self.skip_nonfinite, on_event=self._record,
        )
        if state is not None:
            pruner.load_state_dict(state)
        return pruner

    def _record(self, report: EventReport) -> None:
        self.events.append(report)
        self._sparsity = report.sparsity
        if self.on_event is not None:
            self.on_event(report)

    def _follow(self, step: int, model: nn.Module) -> None:
        """Join a run at optimizer step ``step`` without saved pruning state: the zeros are what was pruned."""
        assert self.pruner is not None
        warnings.warn(
            f"fggp: training resumes at step {step} without saved pruning state; taking the weights' exact "
            "zeros as pruned", RuntimeWarning, stacklevel=3,
        )
        state = self.pruner.state_dict()
        state["step"] = step
        state["masks"] = {n: (p.detach() != 0).cpu() for n, p in self.pruner.params.items()}
        self.pruner.load_state_dict(state)
        self._sparsity = self.pruner.sparsity()

    def _prune_at_start(self) -> None:
        """An event before the first step (e.g. ``OneShotSchedule(s, step=0)``), for methods without gradients."""
        assert self.pruner is not None
        k = self.pruner.core.event_k(0) if self.pruner.step == 0 and self.schedule.is_event(0) else 0
        if (sum(k.values()) if isinstance(k, Mapping) else k) and not self.events:  # skipped when it prunes nothing
            if self.method.needs_grads:
                raise ConfigError("schedule", self.schedule, f"an event at step 0 has no gradients for {self.method}")
            self.pruner.prune_now()

    def _detach(self) -> None:
        if self.pruner is not None:
            self.pruner.remove()

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The pruner's state (step, masks as CPU bool tensors, configuration); {} before training."""
        if self.pruner is None:
            return dict(self._pending or {})
        return self.pruner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict``: now if attached, else at the next attach. Checked against the configuration."""
        if not state:
            return
        probe = Pruner(self.method, self.schedule, scope=self.scope, distribution=self.distribution,
                       skip_nonfinite=self.skip_nonfinite)
        probe.load_state_dict({**state, "masks": {}})  # the configuration check, before anything changes
        if self.pruner is not None and self.pruner.attached:
            self.pruner.load_state_dict(state)
            self._sparsity = self.pruner.sparsity()
        else:
            self._pending = dict(state)


class PruningAccess:
    """What a framework callback exposes of its ``FrameworkPruning`` (held as ``self.pruning``)."""

    pruning: FrameworkPruning

    @property
    def pruner(self) -> TorchPruner | None:
        """The attached ``fggp.torch.TorchPruner`` (None before training starts)."""
        return self.pruning.pruner

    @property
    def events(self) -> list[EventReport]:
        """The ``EventReport`` of every event of this callback's training runs."""
        return self.pruning.events

    def sparsity(self) -> float:
        return self.pruning.sparsity()

    def layer_report(self) -> dict[str, dict[str, float]]:
        return self.pruning.layer_report()

    def state_dict(self) -> dict[str, Any]:
        return self.pruning.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruning.load_state_dict(state)
