"""On CPU, ``attach`` runs its events through ``HOST_TORCH`` (NumPy's kernels on zero-copy views):
the same masks as ``fggp.torch.select`` with torch ops (``TORCH``), bool torch tensors back."""

from __future__ import annotations

import pytest
import torch

import fggp_core as F
from fggp.torch import TORCH, select
from fggp.torch.backend import HOST_TORCH, backend_of
from tests.torch.training import tiny_mlp


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("method", [F.FGGP(0.5), F.Taylor(), F.Magnitude()], ids=["fggp", "taylor", "magnitude"])
def test_host_backend_selects_what_torch_ops_select(dtype, method):
    g = torch.Generator().manual_seed(3)
    weights = {n: torch.randn(s, generator=g).to(dtype) for n, s in (("a", (7, 9)), ("b", (40,)), ("c", (3, 2, 5)))}
    weights["b"][:10] = 0.0  # ties at the k-th key
    grads = {n: torch.randn(w.shape, generator=g).to(dtype) for n, w in weights.items()}
    masks = {n: torch.rand(w.shape, generator=g) > 0.2 for n, w in weights.items()}
    for k in (0, 1, 37, sum(int(m.sum()) for m in masks.values())):
        ours = F.select(method, weights, grads, masks, k, backend=HOST_TORCH)
        theirs = select(method, weights, grads, masks, k)
        for name in weights:
            assert isinstance(ours[name], torch.Tensor) and ours[name].dtype == torch.bool
            assert torch.equal(ours[name], theirs[name]), (name, k)
    assert all(torch.equal(m, m2) for m, m2 in zip(masks.values(), masks.values()))  # inputs untouched


def test_attach_on_cpu_uses_the_host_backend_and_torch_ops_elsewhere():
    model = tiny_mlp()
    assert backend_of(list(model.parameters())) is HOST_TORCH
    assert backend_of([torch.zeros(2), torch.zeros(2, device="meta")]) is TORCH
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    from fggp.torch import attach

    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=0))
    assert pruner.core.backend is HOST_TORCH
    pruner.prune_now()
    assert all(isinstance(m, torch.Tensor) and m.dtype == torch.bool for m in pruner.masks.values())
    assert pruner.sparsity() == pytest.approx(0.5, abs=0.01)
