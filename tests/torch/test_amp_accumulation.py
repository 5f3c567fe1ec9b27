"""Steps are optimizer steps that happened: a GradScaler-skipped step is no step (and no event),
gradient accumulation counts optimizer steps, not backward passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fggp_core as F
from fggp.torch import attach
from tests.torch.training import EventRecorder, assert_pruned_entries_zero, batch, tiny_mlp

SCHEDULE = F.PolynomialSchedule(0.0, 0.75, begin_step=1, end_step=9, frequency=2)  # events 1, 3, 5, 7, 9


@pytest.mark.parametrize("fused", [False, True], ids=["skip-by-not-stepping", "fused-adam-found-inf"])
def test_grad_scaler_skipped_steps_are_not_steps_nor_events(fused):
    model = tiny_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    recorder = EventRecorder(optimizer)
    pruner = recorder.attach(attach(model, optimizer, F.FGGP(), SCHEDULE))
    poisoned = {3, 4, 8}  # iterations whose gradients hold an inf: the scaler skips their step
    counted = []
    for iteration in range(1, 14):
        optimizer.zero_grad()
        x, y = batch(iteration, image=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if iteration in poisoned:
            model[0].weight.grad[0, 0] = float("inf")
        before = {n: m.clone() for n, m in pruner.masks.items()}
        scaler.step(optimizer)
        scaler.update()
        if iteration in poisoned:
            assert all(torch.equal(before[n], m) for n, m in pruner.masks.items())
        counted.append(pruner.step)
    assert counted == [1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]
    assert [e.step for e in recorder.events] == [1, 3, 5, 7, 9]
    recorder.check()
    assert pruner.sparsity() == round(144 * 0.75) / 144
    assert_pruned_entries_zero(pruner, optimizer)


def test_gradient_accumulation_counts_optimizer_steps_and_uses_the_accumulated_gradient():
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    recorder = EventRecorder(optimizer)
    pruner = recorder.attach(attach(model, optimizer, F.Taylor(), SCHEDULE))
    micro = 3
    for step in range(1, 11):
        optimizer.zero_grad()
        for i in range(micro):
            x, y = batch(100 * step + i, image=False)
            (nn.functional.cross_entropy(model(x), y) / micro).backward()
        optimizer.step()
        assert pruner.step == step
    assert [e.step for e in recorder.events] == SCHEDULE.events()
    recorder.check()  # the captured gradients are the accumulated ones the optimizer used
    assert_pruned_entries_zero(pruner, optimizer)
