"""optimizer.step(closure) (LBFGS-style, and how Lightning steps): the closure's backward runs inside the
step, after the pre-step hook, so the pruner must re-zero weights and state after the step."""

import torch
from torch import nn

import fggp.torch
import fggp_core as F


def test_step_with_closure_keeps_pruned_weights_and_momentum_at_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # keeps zeros given masked grads
    pruner = fggp.torch.attach(model, optimizer, F.Magnitude(), F.PolynomialSchedule(0.0, 0.7, 0, 4, 2))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    params = dict(model.named_parameters())
    for _ in range(10):
        optimizer.step(closure)
        for name, mask in pruner.core.masks.items():
            pruned = ~mask
            assert torch.count_nonzero(params[name].detach()[pruned]) == 0, name
            assert torch.count_nonzero(optimizer.state[params[name]]["momentum_buffer"][pruned]) == 0, name
    n = sum(m.numel() for m in pruner.core.masks.values())
    assert sum(int((~m).sum()) for m in pruner.core.masks.values()) == round(0.7 * n)
