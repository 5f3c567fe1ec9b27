"""Between events only gradients are masked for SGD/Adam/AdamW: their update provably keeps a +0.0
weight with 0 gradient and state at +0.0. These tests run such optimizers for many steps with the
weight pass disabled and check every pruned entry is still +0.0 exactly; any other optimizer (or
an out-of-range setting) keeps the weight pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fggp_core as F
from fggp.torch import attach
from fggp.torch.masking import PrunedEntries, keeps_zeros
from tests.torch.training import assert_pruned_entries_zero, tiny_cnn, train_step

SGD, ADAM, ADAMW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
KNOWN = {
    "sgd": lambda p: SGD(p, lr=0.1),
    "sgd-momentum": lambda p: SGD(p, lr=0.1, momentum=0.9),
    "sgd-nesterov-wd": lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "sgd-dampening-maximize-foreach": lambda p: SGD(
        p, lr=0.05, momentum=0.9, dampening=0.5, weight_decay=1e-3, maximize=True, foreach=True
    ),
    "sgd-fused": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3, fused=True),
    "adam": lambda p: ADAM(p, lr=1e-2),
    "adam-amsgrad-wd-maximize": lambda p: ADAM(p, lr=1e-2, amsgrad=True, weight_decay=0.1, maximize=True),
    "adam-foreach-decoupled": lambda p: ADAM(p, lr=1e-2, weight_decay=0.1, foreach=True, decoupled_weight_decay=True),
    "adam-fused": lambda p: ADAM(p, lr=1e-2, weight_decay=0.1, fused=True),
    "adamw": lambda p: ADAMW(p, lr=1e-2, weight_decay=0.1),
    "adamw-amsgrad-fused": lambda p: ADAMW(p, lr=1e-2, weight_decay=0.5, amsgrad=True, fused=True),
    "adamw-single-tensor": lambda p: ADAMW(p, lr=1e-2, weight_decay=0.1, foreach=False),
}


class NoisySGD(torch.optim.SGD):
    """A subclass that may move any weight: unknown to ``keeps_zeros`` by design. (Its step does not
    call ``super().step()``: torch would then run the step hooks twice once SGD's step is patched.)"""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"]).add_(1e-3)


UNKNOWN = {
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2),
    "sgd-subclass": lambda p: NoisySGD(p, lr=0.1),
    "adam-eps-0": lambda p: ADAM(p, lr=1e-2, eps=0.0),  # 0 / (0 + 0) is NaN
    "adamw-lr-wd-above-1": lambda p: ADAMW(p, lr=2.0, weight_decay=1.0),  # w * (1 - 2) turns +0.0 into -0.0
}


def pruned_run(make, steps: int = 40, poison: bool = False, after_attach=None):
    model = tiny_cnn()
    optimizer = make(model.parameters())
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.7, step=1))
    if after_attach is not None:
        after_attach(pruner, optimizer)
    calls = []
    real = pruner._mask_weights
    pruner._mask_weights = lambda: (calls.append(1), real())
    for step in range(1, steps + 1):
        if poison and step > 1:  # a NaN and -inf at pruned gradient entries: must not reach the weights
            optimizer.zero_grad()
            x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(step))
            model(x).sum().backward()
            grad = model[0].weight.grad
            grad[~pruner.masks["0.weight"]] = float("nan")
            model[4].weight.grad[~pruner.masks["4.weight"]] = -float("inf")
            optimizer.step()
        else:
            train_step(model, optimizer, step, image=True)
    return pruner, optimizer, calls


@pytest.mark.parametrize("name", list(KNOWN))
def test_known_optimizers_keep_pruned_weights_at_plus_zero_without_a_weight_pass(name):
    pruner, optimizer, calls = pruned_run(KNOWN[name])
    assert keeps_zeros(optimizer)
    assert not calls  # the weights were never masked after the event: the optimizer alone kept the zeros
    assert pruner.sparsity() > 0.6
    assert assert_pruned_entries_zero(pruner, optimizer) >= 0  # +0.0 exactly (no -0.0), state 0


@pytest.mark.parametrize("name", ["sgd-nesterov-wd", "adam-amsgrad-wd-maximize", "adamw-amsgrad-fused"])
def test_non_finite_gradients_at_pruned_entries_never_reach_the_weights(name):
    pruner, optimizer, calls = pruned_run(KNOWN[name], steps=6, poison=True)
    assert not calls
    assert_pruned_entries_zero(pruner, optimizer)
    assert torch.isfinite(pruner.params["0.weight"]).all()


@pytest.mark.parametrize("name", list(UNKNOWN))
def test_other_optimizers_and_unsafe_settings_keep_the_weight_pass(name):
    pruner, optimizer, calls = pruned_run(UNKNOWN[name], steps=8)
    assert not keeps_zeros(optimizer)
    assert len(calls) == 8
    for n, mask in pruner.masks.items():
        weight = pruner.params[n].detach()[~mask]
        assert torch.equal(weight, torch.zeros_like(weight)) and not torch.signbit(weight).any(), n


def test_a_scheduler_raising_adamw_lr_past_one_over_wd_turns_the_weight_pass_on():
    model = nn.Linear(4, 4)
    optimizer = ADAMW(model.parameters(), lr=0.5, weight_decay=1.0)
    assert keeps_zeros(optimizer)
    optimizer.param_groups[0]["lr"] = 1.5
    assert not keeps_zeros(optimizer)


@pytest.mark.parametrize("setting", [{"lr": float("inf")}, {"momentum": float("nan")}, {"weight_decay": float("inf")}])
def test_non_finite_sgd_settings_turn_the_weight_pass_on(setting):
    optimizer = SGD(nn.Linear(4, 4).parameters(), lr=0.1, momentum=0.9)
    assert keeps_zeros(optimizer)
    optimizer.param_groups[0].update(setting)  # inf * 0 is NaN
    assert not keeps_zeros(optimizer)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_exact_zeroing_gives_plus_zero_for_nan_inf_and_negative_values(dtype):
    mask = torch.tensor([True, False, False, False, True, False])
    x = torch.tensor([1.5, float("nan"), -float("inf"), -2.0, -0.0, -0.0], dtype=dtype)
    entries = PrunedEntries({"w": mask}, {"w": dtype})
    entries.exact("w", x)
    assert x[~mask].eq(0).all() and not torch.signbit(x[~mask]).any()
    assert x[0] == 1.5 and torch.signbit(x[4])  # kept entries keep their bits, -0.0 included
    moments = torch.full((6,), float("nan"), dtype=torch.float32)  # another element size than the weight
    entries.exact("w", moments)
    assert moments[~mask].eq(0).all() and moments[mask].isnan().all()


LIFTED = ["adam", "adam-amsgrad-wd-maximize", "adam-foreach-decoupled", "adamw", "adamw-single-tensor"]


def lifted_run(name: str, poison: bool = False):
    """``pruned_run`` that also records, during each step, the pruned second moments the step saw."""
    seen: list[torch.Tensor] = []

    def probe_after_the_pruner(pruner, optimizer):
        def probe(opt, args, kwargs):  # registered after the pruner's hook: runs after it, before the update
            for n, mask in pruner.masks.items():
                v = opt.state.get(pruner.params[n], {}).get("exp_avg_sq")
                if v is not None:
                    seen.append(v[~mask].clone())

        optimizer.register_step_pre_hook(probe)

    pruner, optimizer, _ = pruned_run(KNOWN[name], steps=12, poison=poison, after_attach=probe_after_the_pruner)
    return pruner, optimizer, seen


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int64)


@pytest.mark.parametrize("poison", [False, True])
@pytest.mark.parametrize("name", LIFTED)
def test_lifted_second_moments_change_no_bit_and_are_zero_outside_the_step(name, poison, monkeypatch):
    """On CPU the pruned Adam second moments hold 1.0 during a non-fused step (torch's sqrt is slow on
    zeros); weights and every state tensor must come out bit for bit as without it, state 0 after."""
    lifted, lifted_opt, seen = lifted_run(name, poison)
    assert any(bool(v.numel()) and bool(v.eq(1.0).all()) for v in seen)  # the lift ran (before each update)
    assert_pruned_entries_zero(lifted, lifted_opt)  # +0.0 weights; state 0 once the step is over
    monkeypatch.setattr("fggp.torch.pruner.LIFT_MIN_PRUNED", 2.0)  # never lift
    plain, plain_opt, seen = lifted_run(name, poison)
    assert not any(bool(v.ne(0).any()) for v in seen)
    for n, p in plain.params.items():
        assert torch.equal(bits(p), bits(lifted.params[n])), n
        for key, value in plain_opt.state[p].items():
            assert torch.equal(bits(value), bits(lifted_opt.state[lifted.params[n]][key])), (n, key)


def test_only_heavily_pruned_tensors_of_non_fused_cpu_adam_are_lifted():
    cases = (({}, 0.9, ["weight"]), ({"fused": True}, 0.9, []), ({}, 0.1, []))  # 0.1 < LIFT_MIN_PRUNED
    for options, sparsity, lifted in cases:
        model = nn.Linear(64, 64)
        optimizer = ADAMW(model.parameters(), **options)
        pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(sparsity, step=0), prunable=["weight"])
        for _ in range(2):  # the moments exist after the first step
            optimizer.zero_grad()
            model(torch.randn(4, 64)).sum().backward()
            optimizer.step()
        pruner._lift(optimizer)
        assert pruner._lifted == lifted, (options, sparsity)
        pruner._unlift()
        assert_pruned_entries_zero(pruner, optimizer)
