"""Lifecycle edges of the torch adapter (issue 14): the event at step 0, refused loads, parametrized and
sparse-gradient layers, tied aliases, finalize through wrappers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import fggp_core as F
from fggp.torch import attach, finalize
from tests.torch.training import assert_pruned_entries_zero, tiny_mlp, train_step


def snapshot(model, optimizer):
    return [p.detach().clone() for p in model.parameters()], [
        {k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)} for s in optimizer.state.values()
    ]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a[0], b[0])) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a[1], b[1])
    )


# -- item 4: an event at step 0 happens before the first optimizer update -----------------------------
@pytest.mark.filterwarnings("ignore:.*layer collapse")
@pytest.mark.parametrize("method", [F.GlobalMP(min_keep=2), F.Magnitude(), F.FGGP(0.5)])
def test_one_shot_at_its_default_step_zero_prunes_before_the_first_update(method):
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = attach(model, optimizer, method, F.OneShotSchedule(0.9))
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    weights = {n: p.detach().numpy().copy() for n, p in pruner.params.items()}  # what the first step starts from
    grads = {n: p.grad.numpy().copy() for n, p in pruner.params.items()}  # and its gradients
    optimizer.step()
    expected = F.select(method, weights, grads, {n: np.ones(w.shape, bool) for n, w in weights.items()}, 130)
    assert pruner.last_event.step == 0 and pruner.sparsity() == 130 / 144
    assert all(np.array_equal(pruner.masks[n].numpy(), m) for n, m in expected.items())
    assert_pruned_entries_zero(pruner, optimizer)
    for step in range(2, 5):
        train_step(model, optimizer, step, image=False)
    assert pruner.last_event.step == 0 and pruner.sparsity() == 130 / 144
    assert_pruned_entries_zero(pruner, optimizer)


def test_prune_now_or_a_loaded_state_takes_the_place_of_the_step_zero_event():
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5))
    first = pruner.prune_now()
    train_step(model, optimizer, 1, image=False)
    assert pruner.last_event is first and pruner.sparsity() == 0.5  # not pruned a second time
    state = pruner.state_dict()
    model2 = tiny_mlp(seed=3)
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    pruner2 = attach(model2, optimizer2, F.Magnitude(), F.OneShotSchedule(0.5))
    pruner2.load_state_dict(state)  # resumed at step 1: the step-0 event is history
    train_step(model2, optimizer2, 2, image=False)
    assert pruner2.last_event is None and all(torch.equal(pruner2.masks[n], m) for n, m in state["masks"].items())


# -- item 5: a refused state changes nothing in the model, the optimizer or the pruner -----------------
@pytest.mark.parametrize("bad", [
    {"step": None}, {"step": float("nan")}, {"step": -5}, {"step": "7"},
    {"masks": {"0.weight": torch.ones(16, 6, dtype=torch.bool)}},
    {"masks": {"0.weight": torch.ones(6, 16, dtype=torch.bool), "2.weight": torch.ones(3, 16, dtype=torch.bool)}},
    {"masks": {"0.weight": torch.ones(16, 6), "2.weight": torch.ones(3, 16, dtype=torch.bool)}},
])
def test_a_refused_load_leaves_weights_masks_and_optimizer_state_untouched(bad):
    model = tiny_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner = attach(model, optimizer, F.Magnitude(), F.PolynomialSchedule(0.0, 0.8, 1, 5, 2))
    for step in range(1, 4):
        train_step(model, optimizer, step, image=False)
    state = {**pruner.state_dict(), "step": 5}
    state["masks"] = {n: torch.zeros_like(m) | (torch.arange(m.numel()).reshape(m.shape) % 9 == 0)
                      for n, m in state["masks"].items()}  # a valid, much sparser state
    before, masks, step = snapshot(model, optimizer), pruner.masks, pruner.step
    with pytest.raises((F.ConfigError, F.InputMismatchError)):
        pruner.load_state_dict({**state, **bad})
    assert same(before, snapshot(model, optimizer)) and pruner.step == step
    assert all(torch.equal(pruner.masks[n], m) for n, m in masks.items())
    pruner.load_state_dict(state)  # the valid one still loads
    assert pruner.step == 5 and pruner.sparsity() > 0.8


# -- item 7: parametrized layers are left out of the default set, out loud ----------------------------
class Symmetric(nn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).transpose(0, 1)


def test_parametrized_layers_are_left_out_with_a_warning_naming_them():
    model = nn.Sequential(
        parametrizations.weight_norm(nn.Linear(6, 16)), nn.Tanh(), parametrizations.spectral_norm(nn.Linear(16, 16)),
        nn.Tanh(), nn.Linear(16, 16), nn.Linear(16, 3),
    )
    parametrize.register_parametrization(model[4], "weight", Symmetric())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    u = model[2].parametrizations.weight[0]._u.clone()
    with pytest.warns(UserWarning, match=r"leaves out the layers \['0', '2', '4'\]") as record:
        pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    assert "0.parametrizations.weight.original1" in str(record[0].message)
    assert list(pruner.params) == ["5.weight"] and torch.equal(model[2].parametrizations.weight[0]._u, u)
    pruner.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # naming the originals: pruned, no warning
        pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1),
                        prunable=["2.parametrizations.weight.original", "5.weight"])
    train_step(model, optimizer, 1, image=False)
    assert (model[2].weight == 0).sum() == (~pruner.masks["2.parametrizations.weight.original"]).sum() > 0


# -- item 12: sparse gradients are refused at attach, before anything changes -------------------------
def test_sparse_embedding_is_refused_at_attach_naming_the_parameter():
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(F.ConfigError, match=r"prunable\['0.weight'\].*sparse=True.*sparse gradients"):
        attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5), sparse_start=F.SparseStart(0.5),
               prunable=["0.weight", "1.weight"])
    assert (model[0].weight != 0).all() and (model[1].weight != 0).all()  # the sparse start was not applied
    attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))  # the default set leaves it out


# -- item 14: a tied alias is named as such ------------------------------------------------------------
def test_naming_a_tied_alias_says_which_name_to_use():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    model[2].weight = model[0].weight
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(F.ConfigError, match=r"prunable='2.weight'.*tied to '0.weight'.*name it '0.weight'"):
        attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1), prunable=["2.weight"])


# -- item 8: finalize(model) finds the pruner attached to a wrapper ------------------------------------
@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel], ids=["compile", "DataParallel"])
def test_finalize_finds_the_pruner_attached_to_a_wrapper(wrap):
    model = tiny_mlp()
    wrapped = wrap(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    pruner = attach(wrapped, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    train_step(model, optimizer, 1, image=False)
    assert finalize(model) is model and not pruner.attached
    pruner2 = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    assert finalize(wrapped) is wrapped and not pruner2.attached  # and the other way round


def test_finalize_of_a_submodule_says_what_to_pass():
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    with pytest.raises(F.ConfigError, match="pass that model, or the pruner"):
        finalize(model[0])
    assert pruner.attached
