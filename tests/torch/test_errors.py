"""Bad input gives a clear fggp_core error naming the argument, and nothing is half-applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fggp_core as F
from fggp.torch import attach, select
from tests.torch.training import host, tiny_mlp, train_step

SCHEDULE = F.PolynomialSchedule(0.0, 0.5, begin_step=1, end_step=4, frequency=1)


def fresh():
    model = tiny_mlp()
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def untouched(model, optimizer, before):
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


@pytest.mark.parametrize(
    "change, argument",
    [
        (dict(prunable=["0.weight", "no.such.weight"]), "prunable"),
        (dict(prunable="0.weight"), "prunable"),
        (dict(prunable=3), "prunable"),
        (dict(prunable=lambda name, parameter: False), "prunable"),
        (dict(prunable=lambda name: True), "prunable"),  # the old one-argument predicate belongs to params=
        (dict(prunable=["0.weight", "0.weight"]), "prunable"),
        (dict(prunable=["0.weight"], params=["0.weight"]), "params"),
        (dict(scope="per-layer"), "scope"),
        (dict(distribution="normal"), "distribution"),
        (dict(sparse_start=0.5), "sparse_start"),
        (dict(method="fggp"), "method"),
        (dict(schedule=lambda step: 0.5), "schedule"),
    ],
)
def test_bad_arguments_raise_config_error_and_attach_nothing(change, argument):
    model, optimizer = fresh()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    kwargs = dict(method=F.FGGP(), schedule=SCHEDULE, sparse_start=F.SparseStart(0.5))
    kwargs.update(change)
    with pytest.raises(F.ConfigError) as error:
        attach(model, optimizer, **kwargs)
    assert error.value.argument == argument and argument in str(error.value)
    untouched(model, optimizer, before)


def test_frozen_and_non_floating_parameters_are_rejected():
    model, optimizer = fresh()
    model[0].weight.requires_grad_(False)
    with pytest.raises(F.ConfigError, match=r"prunable\['0.weight'\].*frozen"):
        attach(model, optimizer, F.Magnitude(), SCHEDULE, prunable=["0.weight"])
    pruner = attach(model, optimizer, F.Magnitude(), SCHEDULE)  # the default set leaves frozen layers out
    assert list(pruner.masks) == ["2.weight"]
    model, optimizer = fresh()
    model.register_parameter("counts", nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False))
    with pytest.raises(F.ConfigError, match=r"prunable\['counts'\].*int64"):
        attach(model, optimizer, F.Magnitude(), SCHEDULE, prunable=["counts", "0.weight"])


def test_optimizer_must_hold_the_prunable_parameters():
    model, _ = fresh()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    partial = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with pytest.raises(F.ConfigError, match=r"does not hold \['2.weight'\]"):
        attach(model, partial, F.Magnitude(), SCHEDULE, sparse_start=F.SparseStart(0.5))
    untouched(model, partial, before)
    with pytest.raises(F.ConfigError, match="torch.optim.Optimizer"):
        attach(model, object(), F.Magnitude(), SCHEDULE)
    with pytest.raises(F.ConfigError, match="torch.nn.Module"):
        attach(object(), partial, F.Magnitude(), SCHEDULE)


def test_a_second_pruner_on_one_optimizer_is_rejected():
    model, optimizer = fresh()
    first = attach(model, optimizer, F.Magnitude(), SCHEDULE)
    with pytest.raises(F.ConfigError, match="already has a fggp pruner"):
        attach(model, optimizer, F.Magnitude(), SCHEDULE)
    first.remove()
    attach(model, optimizer, F.Magnitude(), SCHEDULE)


def snapshot(model, optimizer, pruner):
    return (host(dict(model.named_parameters())),
            {n: optimizer.state[p]["momentum_buffer"].clone() for n, p in pruner.params.items()},
            host(pruner.masks))


def test_nonfinite_gradient_at_an_event_raises_naming_the_parameter_and_changes_nothing():
    model, optimizer = fresh()
    pruner = attach(model, optimizer, F.FGGP(), SCHEDULE)
    train_step(model, optimizer, 1, image=False)  # event 1 prunes
    seen = {}
    optimizer.register_step_pre_hook(lambda *a: seen.update(masks=host(pruner.masks)))
    optimizer.zero_grad()
    model(torch.ones(2, 6)).sum().backward()
    model[2].weight.grad[1, 1] = float("nan")
    model[2].weight.grad[0, 2] = float("inf")
    with pytest.raises(F.NonFiniteScoreError, match="'2.weight'") as error:
        optimizer.step()
    assert error.value.tensor == "2.weight" and error.value.count == 2
    assert pruner.step == 2
    assert all(np.array_equal(seen["masks"][n], m.numpy()) for n, m in pruner.masks.items())


def test_nonfinite_event_leaves_weights_and_optimizer_state_as_the_step_left_them():
    model, optimizer = fresh()
    states = []
    optimizer.register_step_post_hook(lambda *a: states.append(snapshot(model, optimizer, pruner)))
    pruner = attach(model, optimizer, F.Gradient(), SCHEDULE)
    train_step(model, optimizer, 1, image=False)
    optimizer.zero_grad()
    model(torch.ones(2, 6)).sum().backward()
    model[0].weight.grad[0, 0] = float("inf")
    with pytest.raises(F.NonFiniteScoreError):
        optimizer.step()
    weights, momentum, masks = snapshot(model, optimizer, pruner)
    expected_weights, expected_momentum, expected_masks = states[-1]  # right after the optimizer's update
    for name, mask in masks.items():
        assert np.array_equal(mask, expected_masks[name])
        assert np.array_equal(weights[name], expected_weights[name])
        assert torch.equal(momentum[name], expected_momentum[name])


def test_skip_nonfinite_skips_the_event_with_a_warning_and_the_next_event_catches_up():
    model, optimizer = fresh()
    poison = []  # a NaN gradient that reaches the event but not the optimizer's update

    def poison_after_update(*args):
        if poison:
            model[0].weight.grad[0, 0] = float("nan")

    optimizer.register_step_post_hook(poison_after_update)
    pruner = attach(model, optimizer, F.Gradient(), SCHEDULE, skip_nonfinite=True)
    train_step(model, optimizer, 1, image=False)
    train_step(model, optimizer, 2, image=False)
    pruned = pruner.sparsity()
    assert 0 < pruned < 0.5
    poison.append(True)
    with pytest.warns(RuntimeWarning, match="event at step 3 skipped.*'0.weight'"):
        train_step(model, optimizer, 3, image=False)
    assert pruner.last_event.skipped and pruner.last_event.step == 3 and pruner.sparsity() == pruned
    poison.clear()
    train_step(model, optimizer, 4, image=False)
    assert not pruner.last_event.skipped
    assert pruner.sparsity() == round(144 * 0.5) / 144


def test_select_takes_torch_tensors_only():
    w = {"a": torch.ones(3)}
    with pytest.raises(F.InputMismatchError, match=r"masks\['a'\] is a ndarray"):
        select(F.Magnitude(), w, None, {"a": np.ones(3, dtype=bool)}, 1)
    with pytest.raises(F.InputMismatchError, match="bool"):
        select(F.Magnitude(), w, None, {"a": torch.ones(3)}, 1)
    with pytest.raises(F.ConfigError, match="needs gradients"):
        select(F.FGGP(), w, None, {"a": torch.ones(3, dtype=torch.bool)}, 1)
