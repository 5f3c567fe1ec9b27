"""Checkpoint/resume: state saved at step t and loaded into a fresh model and optimizer gives the
same masks at every later event as an uninterrupted run; the state loads with weights_only=True."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import fggp_core as F
from fggp.torch import attach
from tests.torch.training import EventRecorder, assert_pruned_entries_zero, tiny_cnn, train_step

SCHEDULE = F.PolynomialSchedule(0.5, 0.9, begin_step=0, end_step=20, frequency=3)
START = F.SparseStart(0.5, "erk", seed=7)
STEPS = 24


def setup(seed: int):
    model = tiny_cnn(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    recorder = EventRecorder(optimizer)
    pruner = recorder.attach(attach(model, optimizer, F.FGGP(0.5), SCHEDULE, sparse_start=START))
    return model, optimizer, pruner, recorder


def masks_by_step(recorder):
    return {e.step: e.after for e in recorder.events}


def save(*objects) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save([o.state_dict() for o in objects], buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("stop", [7, 9])  # mid-interval, and right after an event
def test_resumed_run_makes_the_same_masks_at_every_later_event(stop):
    model, optimizer, pruner, full = setup(0)
    for step in range(1, STEPS + 1):
        train_step(model, optimizer, step, image=True)
        if step == stop:
            checkpoint = save(model, optimizer, pruner)
    uninterrupted = masks_by_step(full)

    # attach first (its sparse start would otherwise zero weights of the loaded model), then load all
    model2, optimizer2, pruner2, resumed = setup(seed=123)
    states = torch.load(checkpoint, weights_only=True)
    model2.load_state_dict(states[0])
    optimizer2.load_state_dict(states[1])
    pruner2.load_state_dict(states[2])
    assert pruner2.step == stop
    for step in range(stop + 1, STEPS + 1):
        train_step(model2, optimizer2, step, image=True)
    later = masks_by_step(resumed)
    assert list(later) == [t for t in uninterrupted if t > stop] and later
    for step, masks in later.items():
        for name, mask in masks.items():
            np.testing.assert_array_equal(mask, uninterrupted[step][name], err_msg=f"step {step} {name}")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert_pruned_entries_zero(pruner2, optimizer2)


def test_state_dict_is_plain_and_round_trips_through_lists_and_numpy():
    model, optimizer, pruner, _ = setup(0)
    for step in range(1, 5):
        train_step(model, optimizer, step, image=True)
    state = pruner.state_dict()
    assert state["step"] == 4 and all(m.dtype == torch.bool and m.device.type == "cpu" for m in state["masks"].values())
    for convert in (lambda m: m.tolist(), lambda m: m.numpy()):
        other_model, other_optimizer, other, _ = setup(1)
        other.load_state_dict({**state, "masks": {n: convert(m) for n, m in state["masks"].items()}})
        assert other.step == 4
        assert all(torch.equal(other.masks[n], pruner.masks[n]) for n in state["masks"])
        assert_pruned_entries_zero(other, other_optimizer)


def test_loading_a_mismatched_state_changes_nothing():
    model, optimizer, pruner, _ = setup(0)
    train_step(model, optimizer, 1, image=True)
    state = pruner.state_dict()
    model2 = tiny_cnn(0)
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    other = attach(model2, optimizer2, F.Magnitude(), SCHEDULE)  # other method
    before = {n: m.clone() for n, m in other.masks.items()}
    with pytest.raises(F.ConfigError, match="method"):
        other.load_state_dict(state)
    other.remove()
    other = attach(model2, optimizer2, F.FGGP(0.5), SCHEDULE)
    wrong = {**state, "masks": {**state["masks"], "0.weight": torch.ones(3, 3, dtype=torch.bool)}}
    with pytest.raises(F.InputMismatchError, match="shape"):
        other.load_state_dict(wrong)
    wrong = {**state, "masks": {n: m.to(torch.uint8) for n, m in state["masks"].items()}}
    with pytest.raises(F.InputMismatchError, match="bool"):
        other.load_state_dict(wrong)
    assert other.step == 0 and all(torch.equal(other.masks[n], before[n]) for n in before)
