"""End to end: train with ``attach``; every event equals the core's selection on the captured
values, the final pruned count is exactly the target, pruned weights and optimizer state are 0."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

import fggp_core as F
from fggp.torch import attach, finalize
from tests.torch.training import (
    EventRecorder,
    assert_pruned_entries_zero,
    batch,
    tiny_cnn,
    tiny_mlp,
    train_step,
)

OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd-nesterov-wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),  # its state "sum" is weight-shaped too
}

METHODS = {
    "fggp-global": (F.FGGP(0.5), "global", "uniform"),
    "magnitude-layerwise-erk": (F.Magnitude(), "layerwise", "erk"),
    "taylor-global": (F.Taylor(), "global", "uniform"),
    "annealed-magnitude-first": (
        F.TwoStage("magnitude", "gradient", extra_fraction=F.CosineRate(0.5, 0.005, 30)), "global", "uniform"
    ),
    "random-layerwise": (F.Random(3), "layerwise", "uniform"),
}

SCHEDULE = F.PolynomialSchedule(0.0, 0.8, begin_step=2, end_step=23, frequency=4)  # events 2,6,...,22 and 23


def run(model, optimizer, method, scope, distribution, steps=26, image=True, **kw):
    recorder = EventRecorder(optimizer)
    pruner = recorder.attach(attach(model, optimizer, method, SCHEDULE, scope=scope, distribution=distribution, **kw))
    for step in range(1, steps + 1):
        train_step(model, optimizer, step, image)
        if SCHEDULE.is_event(step):
            assert pruner.last_event.step == step and not pruner.last_event.skipped
            assert_pruned_entries_zero(pruner, optimizer)
    return pruner, recorder


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("kind", list(METHODS))
def test_every_event_equals_core_select_and_pruned_state_is_zero(opt, kind):
    model = tiny_cnn()
    optimizer = OPTIMIZERS[opt](model.parameters())
    method, scope, distribution = METHODS[kind]
    pruner, recorder = run(model, optimizer, method, scope, distribution)
    recorder.check()
    assert [e.step for e in recorder.events] == SCHEDULE.events() == [2, 6, 10, 14, 18, 22, 23]
    assert pruner.step == 26
    sizes = {n: p.numel() for n, p in pruner.params.items()}
    pruned = sum(sizes[n] - int(m.sum()) for n, m in pruner.masks.items())
    if scope == "global":
        assert pruned == round(sum(sizes.values()) * 0.8)
    else:
        targets = F.layer_targets({n: tuple(p.shape) for n, p in pruner.params.items()}, 0.8, distribution)
        assert {n: sizes[n] - int(m.sum()) for n, m in pruner.masks.items()} == targets
    # weights and every weight-shaped state (momentum_buffer / exp_avg / exp_avg_sq) are 0 at pruned entries
    assert assert_pruned_entries_zero(pruner, optimizer) == len(pruner.params) * (2 if "adam" in opt else 1)


def test_default_prunable_set_is_linear_and_conv_weights_in_named_parameters_order():
    model = tiny_cnn()
    pruner = attach(model, torch.optim.SGD(model.parameters(), lr=0.1), F.Magnitude(), SCHEDULE)
    assert list(pruner.masks) == ["0.weight", "4.weight", "6.weight"]
    assert all(m.dtype == torch.bool and m.shape == pruner.params[n].shape for n, m in pruner.masks.items())


def test_sparse_start_masks_weights_at_attach_and_keeps_them_pruned():
    model = tiny_mlp(width=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    start = F.SparseStart(0.5, "erk", seed=4)
    pruner = attach(model, optimizer, F.FGGP(), F.PolynomialSchedule(0.5, 0.9, 0, 10, 5), sparse_start=start)
    expected = F.random_masks({n: tuple(p.shape) for n, p in pruner.params.items()}, start)
    assert all(torch.equal(pruner.masks[n], torch.from_numpy(m)) for n, m in expected.items())
    assert_pruned_entries_zero(pruner, optimizer)
    for step in range(1, 4):
        train_step(model, optimizer, step, image=False)
        assert_pruned_entries_zero(pruner, optimizer)


def test_accessors_report_step_sparsity_and_layers():
    model = tiny_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=3))
    for step in range(1, 5):
        train_step(model, optimizer, step, image=False)
    assert pruner.step == 4 and pruner.last_event.step == 3
    assert pruner.sparsity() == 0.5
    report = pruner.layer_report()
    assert sum(r["pruned"] for r in report.values()) == 72 and set(report) == {"0.weight", "2.weight"}  # of 144


def test_prune_now_runs_a_one_shot_event_at_step_zero():
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = attach(model, optimizer, F.GlobalMP(min_keep=4), F.OneShotSchedule(0.9, step=0))
    expected = F.select(F.GlobalMP(4), {n: p.detach().numpy().copy() for n, p in pruner.params.items()}, None,
                        {n: m.numpy() for n, m in pruner.masks.items()}, round(144 * 0.9))
    report = pruner.prune_now()
    assert report.step == 0 and report.pruned == 130
    assert all(torch.equal(pruner.masks[n], torch.from_numpy(m)) for n, m in expected.items())
    assert_pruned_entries_zero(pruner, optimizer)


def test_grad_none_at_event_is_an_error_for_gradient_methods_only():
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = F.OneShotSchedule(0.5, step=2)
    pruner = attach(model, optimizer, F.FGGP(), schedule)
    optimizer.zero_grad()
    model[2].weight.sum().backward()  # 0.weight gets no gradient this step
    optimizer.step()  # between events a missing gradient is fine
    with pytest.raises(F.InputMismatchError, match=r"\['0.weight'\] have no gradient"):
        optimizer.step()
    assert pruner.step == 2 and pruner.sparsity() == 0.0  # the step counted, nothing pruned
    pruner.remove()
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))  # needs no gradient
    optimizer.step()
    assert pruner.sparsity() == 0.5


def test_remove_detaches_and_finalize_returns_a_plain_model():
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    keys = list(model.state_dict())
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    train_step(model, optimizer, 1, image=False)
    pruner.remove()
    assert not pruner.attached
    train_step(model, optimizer, 2, image=False)
    assert pruner.step == 1  # no longer counting, no longer masking: pruned weights move again
    assert any(bool(pruner.params[n].detach()[~m].any()) for n, m in pruner.masks.items())
    assert pruner.finalize() is model  # applies the masks a last time
    assert_pruned_entries_zero(pruner, optimizer)
    pruner2 = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    assert pruner2.sparsity() == 0.0 and pruner2.attached
    assert finalize(model) is model and not pruner2.attached
    assert list(model.state_dict()) == keys
    assert b"fggp" not in pickle.dumps(model)  # nothing of fggp is referenced by the model
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


@pytest.mark.parametrize("opt", ["sgd-momentum", "adam"])
def test_pruned_entries_stay_zero_when_their_gradient_is_not_finite(opt):
    model = tiny_mlp()
    optimizer = OPTIMIZERS[opt](model.parameters())
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    train_step(model, optimizer, 1, image=False)
    pruned = (~pruner.masks["0.weight"]).nonzero()[0].tolist()
    optimizer.zero_grad()
    model(torch.ones(2, 6)).sum().backward()
    model[0].weight.grad[tuple(pruned)] = float("nan")  # NaN * 0 is NaN: the exact fallback must catch it
    optimizer.step()
    assert model[0].weight.grad[tuple(pruned)] == 0
    assert_pruned_entries_zero(pruner, optimizer)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_bfloat16_and_double_models_are_pruned_like_the_core(dtype):
    model = tiny_mlp().to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    recorder = EventRecorder(optimizer)
    pruner = recorder.attach(attach(model, optimizer, F.FGGP(), SCHEDULE))
    for step in range(1, 25):
        optimizer.zero_grad()
        x, y = batch(step, image=False)
        nn.functional.cross_entropy(model(x.to(dtype)).float(), y).backward()
        optimizer.step()
    recorder.check()
    assert pruner.sparsity() == round(144 * 0.8) / 144
    assert_pruned_entries_zero(pruner, optimizer)
