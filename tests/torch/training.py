"""Small models, deterministic data and an event recorder for the torch adapter's tests.

``EventRecorder`` hooks the optimizer around the pruner: its capture hook is registered
before ``attach`` (so it sees this step's updated weights and gradients, and the masks before
the event), its result hook after (so it sees the masks the event made). ``check`` then
replays every event with ``fggp_core.select`` (NumPy) on the captured values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import fggp_core as F
from fggp.torch import TORCH
from tests.harness import assert_same_masks


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(),
        nn.Linear(16, 3),
    )


def tiny_mlp(seed: int = 0, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 3))


def batch(step: int, image: bool, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of iteration ``step``: depends on ``step`` only (so a resumed run sees the same)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(size, 1, 8, 8, generator=g) if image else torch.randn(size, 6, generator=g)
    return x, torch.randint(0, 3, (size,), generator=g)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, step: int, image: bool) -> None:
    optimizer.zero_grad()
    x, y = batch(step, image)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Host copies (bfloat16 as ml_dtypes.bfloat16, exactly)."""
    return {n: TORCH.to_host(t.detach().clone()) for n, t in tensors.items()}


@dataclass
class Event:
    step: int
    weights: dict[str, np.ndarray]
    grads: dict[str, np.ndarray] | None
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray] = field(default_factory=dict)


class EventRecorder:
    """Records weights, gradients and masks around every event of a pruner (see module doc)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.pruner: Any = None
        self.events: list[Event] = []
        self._pending: Event | None = None
        optimizer.register_step_post_hook(self._capture)

    def attach(self, pruner: Any) -> Any:
        self.pruner = pruner
        self.optimizer.register_step_post_hook(self._result)
        return pruner

    def _capture(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        p = self.pruner
        if p is None or not p.attached or not p.core.schedule.is_event(p.step + 1):
            return
        grads = {n: t.grad for n, t in p.params.items()} if p.core.method.needs_grads else None
        self._pending = Event(p.step + 1, host(p.params), None if grads is None else host(grads), host(p.masks))

    def _result(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._pending is not None and self.pruner.step == self._pending.step:
            self._pending.after = host(self.pruner.masks)
            self.events.append(self._pending)
        self._pending = None

    def check(self) -> None:
        """Every event's masks equal fggp_core.select on the captured values, k from the schedule."""
        core = self.pruner.core
        assert self.events, "no event was recorded"
        for event in self.events:
            k = expected_k(core, event.before, event.step)
            expected = F.select(core.method, event.weights, event.grads, event.before, k, scope=core.scope,
                                step=event.step)
            assert_same_masks(event.after, expected)


def expected_k(core: F.Pruner, masks: dict[str, np.ndarray], step: int) -> int | dict[str, int]:
    """k from SPEC's formula, computed here independently of Pruner.event_k."""
    sparsity = core.schedule.sparsity(step)
    pruned = {n: int(m.size - m.sum()) for n, m in masks.items()}
    if core.scope == "global":
        total = sum(m.size for m in masks.values())
        return max(0, round(total * sparsity) - sum(pruned.values()))
    targets = F.layer_targets({n: m.shape for n, m in masks.items()}, sparsity, core.distribution)
    return {n: max(0, targets[n] - pruned[n]) for n in masks}


def assert_pruned_entries_zero(pruner: Any, optimizer: torch.optim.Optimizer) -> int:
    """Pruned weights are +0.0 exactly; every weight-shaped optimizer state is 0 there. Returns #checked states."""
    states = 0
    for name, mask in pruner.masks.items():
        param = pruner.params[name]
        pruned = ~mask
        assert torch.equal(param.detach()[pruned], torch.zeros_like(param.detach()[pruned])), name
        assert not torch.signbit(param.detach()[pruned]).any(), f"{name}: a pruned weight is -0.0"
        for key, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                assert not value[pruned].any(), f"{name}: optimizer state {key!r} is nonzero at pruned entries"
                states += 1
    return states
