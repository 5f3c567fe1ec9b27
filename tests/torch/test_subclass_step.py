"""An optimizer subclass whose ``step()`` calls ``super().step()`` takes one step per call.

torch wraps a class's ``step`` with the code that runs the step hooks when it builds the first
instance of that class, so once a plain ``Adam`` exists anywhere in the process, ``MyAdam.step``
calling ``super().step()`` runs the pruner's hooks twice per real step. The pruner counts the
outermost call only: same step count, events, masks, weights and optimizer state, bit for bit,
as the plain optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import fggp_core as F
from fggp.torch import attach
from tests.torch.training import batch, tiny_mlp, train_step

SCHEDULE = F.PolynomialSchedule(0.0, 0.75, begin_step=1, end_step=9, frequency=2)  # events 1, 3, 5, 7, 9
STEPS = 12


class SuperStepAdam(torch.optim.Adam):
    """The common pattern (logging, clipping, ...): own work, then the parent's step."""

    def step(self, closure=None):
        return super().step(closure)


class SuperStepAdamChild(SuperStepAdam):
    """Three wrapped ``step``s in one real step."""

    def step(self, closure=None):
        return super().step(closure)


class ClosureFirstAdam(torch.optim.Adam):
    """Evaluates the closure itself (backward inside the step, after the pre-step hook), then steps without it."""

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        super().step()
        return loss


def _wrap_every_step(cls: type[torch.optim.Optimizer]) -> None:
    """Build one instance of each class in ``cls``'s MRO that defines ``step``, so that each of those ``step``s
    runs the hooks (as in any program that also builds a plain ``Adam``), whatever ran before this test."""
    for base in cls.__mro__:
        if issubclass(base, torch.optim.Optimizer) and base is not torch.optim.Optimizer and "step" in vars(base):
            base([nn.Parameter(torch.zeros(1))])


def _loss_fn(model: nn.Module, optimizer: torch.optim.Optimizer, iteration: int) -> Callable[[], torch.Tensor]:
    x, y = batch(iteration, image=False)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def _train(cls: type[torch.optim.Optimizer], closure: bool) -> dict[str, Any]:
    model = tiny_mlp()
    optimizer = cls(model.parameters(), lr=1e-2)
    events: list[int] = []
    pruner = attach(model, optimizer, F.FGGP(), SCHEDULE, on_event=lambda report: events.append(report.step))
    counted = []
    for iteration in range(1, STEPS + 1):
        loss_fn = _loss_fn(model, optimizer, iteration)
        if closure:
            optimizer.step(loss_fn)
        else:
            loss_fn()
            optimizer.step()
        counted.append(pruner.step)
    state = [t for p in model.parameters() for t in optimizer.state[p].values()]
    return {"counted": counted, "events": events, "masks": pruner.masks, "tensors": [*model.parameters(), *state]}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The float32 bit patterns (so +0.0 and -0.0 differ)."""
    return t.detach().view(torch.int32)


@pytest.mark.parametrize(
    ("cls", "closure"),
    [(SuperStepAdam, False), (SuperStepAdamChild, False), (SuperStepAdam, True), (ClosureFirstAdam, True)],
    ids=["super-step", "super-super-step", "super-step-closure", "own-closure-then-super-step"],
)
def test_subclass_calling_super_step_counts_one_step_like_the_plain_optimizer(cls, closure):
    _wrap_every_step(cls)
    plain = _train(torch.optim.Adam, closure)
    sub = _train(cls, closure)
    assert sub["counted"] == plain["counted"] == list(range(1, STEPS + 1))
    assert sub["events"] == plain["events"] == [1, 3, 5, 7, 9]
    assert sub["masks"].keys() == plain["masks"].keys()
    assert all(torch.equal(sub["masks"][n], plain["masks"][n]) for n in plain["masks"])
    assert len(sub["tensors"]) == len(plain["tensors"])
    for a, b in zip(sub["tensors"], plain["tensors"]):  # weights, biases, Adam's step and moments
        assert torch.equal(_bits(a), _bits(b))


def test_a_step_that_raised_does_not_hide_the_next_steps():
    """A step that raised inside the parent's step never ran its post-step hook; later steps still count."""
    _wrap_every_step(SuperStepAdam)
    model = tiny_mlp()
    optimizer = SuperStepAdam(model.parameters(), lr=1e-2)
    pruner = attach(model, optimizer, F.Magnitude(), SCHEDULE)

    def failing() -> torch.Tensor:
        raise RuntimeError("closure failed")

    with pytest.raises(RuntimeError, match="closure failed"):
        optimizer.step(failing)
    assert pruner.step == 0
    for iteration in range(1, 5):
        train_step(model, optimizer, iteration, image=False)
        assert pruner.step == iteration
    assert pruner.last_event is not None and pruner.last_event.step == 3
