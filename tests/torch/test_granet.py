"""GraNet through fggp.torch.attach: masks equal the core's on the same inputs, regrowth from dense
gradients, regrown weights and their Adam moments at 0.0, exact counts after every event."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fggp.torch
import fggp_core as F


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_granet_events_match_the_core_and_regrown_entries_restart_at_zero(scope):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = F.PolynomialSchedule(0.0, 0.8, 0, 30, 5)
    method = F.GraNet(total_steps=40, initial=0.5, minimum=0.005)
    pruner = fggp.torch.attach(model, optimizer, method, schedule, scope=scope)
    events = []
    prune = pruner.core.prune

    def spy(weights, grads=None):
        host = {n: w.detach().numpy().copy() for n, w in weights.items()}
        dense = {n: g.detach().numpy().copy() for n, g in grads.items()}
        before, step = {n: m.numpy().copy() for n, m in pruner.core.masks.items()}, pruner.core.step
        report = prune(weights, grads)
        events.append((step, host, dense, before, report.k))
        return report

    pruner.core.prune = spy
    x, y = torch.randn(64, 12), torch.randint(0, 4, (64,))
    regrown = 0
    for _ in range(40):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        count = len(events)
        optimizer.step()
        if len(events) == count:
            continue
        step, weights, grads, before, k = events[-1]
        expected = F.select(method, weights, grads, before, k, scope=scope, step=step)
        params = dict(model.named_parameters())
        for name, mask in expected.items():
            after = pruner.core.masks[name].numpy()
            np.testing.assert_array_equal(after, mask)
            new = after & ~before[name]
            regrown += int(new.sum())
            state = optimizer.state[params[name]]
            for value in (params[name].detach(), state["exp_avg"], state["exp_avg_sq"]):
                assert torch.count_nonzero(value[torch.from_numpy(new)]) == 0  # regrown: restart at 0.0
                assert torch.count_nonzero(value[torch.from_numpy(~after)]) == 0
        goal = schedule.sparsity(step)
        sizes = {n: m.size for n, m in expected.items()}
        pruned = {n: int((~pruner.core.masks[n].numpy()).sum()) for n in sizes}
        if scope == "global":
            assert sum(pruned.values()) == round(sum(sizes.values()) * goal)
        else:
            assert all(pruned[n] == round(sizes[n] * goal) for n in sizes)
    assert len(events) == len(schedule.events()) - 1 and regrown > 0
