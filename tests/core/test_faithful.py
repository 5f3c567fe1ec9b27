"""Faithful to the papers: Global MP's minimum threshold as the authors compute it, GraNet's
prune-and-regrow, and no silent layer collapse (issue 13)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fggp_core as F

# VGG-19's CIFAR layer shapes, channels divided by 8 (the same proportions, a fast test).
VGG = [(8, 3, 3, 3), (8, 8, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), *[(32, 32, 3, 3)] * 3,
       (64, 32, 3, 3), *[(64, 64, 3, 3)] * 7, (10, 64)]


def _he(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {f"l{i}": (rng.standard_normal(s) * math.sqrt(2 / math.prod(s[1:]))).astype(np.float32)
            for i, s in enumerate(shapes)}


def _authors_loop(layer_weights, layer_sparsities, m, target):
    """``prune_withMT.py`` step2 as written (float64 NumPy), with an iteration cap."""
    s = layer_sparsities.copy()
    s[layer_weights < m] = 0
    s = s / (np.sum(layer_weights * s) / np.sum(layer_weights)) * target
    total = np.sum(layer_weights * s) / np.sum(layer_weights)
    if np.any((1 - s) * layer_weights < m):
        low = ((1 - s) * layer_weights < m) & (layer_weights > m)
        s[low] = 1 - m / layer_weights[low]
        total = np.sum(layer_weights * s) / np.sum(layer_weights)
        for _ in range(100000):
            if total >= target:
                break
            s = s / total * target
            low = ((1 - s) * layer_weights < m) & (layer_weights > m)
            s[low] = 1 - m / layer_weights[low]
            total = np.sum(layer_weights * s) / np.sum(layer_weights)
    return s


@pytest.mark.parametrize("sparsity", [0.9, 0.95, 0.98])
def test_gupta_rule_matches_the_authors_loop_layer_by_layer(sparsity):
    weights = _he(VGG)
    sizes = np.array([w.size for w in weights.values()], np.float64)
    n = int(sizes.sum())
    k = round(n * sparsity)
    m = int(n * 0.001)  # a 0.1 % threshold: several layers clamp
    masks = {name: np.ones(w.shape, bool) for name, w in weights.items()}
    plain = F.select(F.Magnitude(), weights, None, masks, k)
    c = np.array([(~plain[name]).sum() for name in weights], np.float64)
    theirs = _authors_loop(sizes, c / sizes, m, k / n)
    expected = [int(np.floor(s * size + 1e-6)) for s, size in zip(theirs, sizes)]  # their int(), float noise aside
    got = F.select(F.GlobalMP(m, rule="gupta"), weights, None, masks, k)
    pruned = [int((~got[name]).sum()) for name in weights]
    assert pruned == expected
    assert all(got[name].sum() >= min(m, got[name].size) for name in weights)
    # per tensor: the smallest |w| of that tensor
    for name, w in weights.items():
        order = np.lexsort((np.arange(w.size), np.abs(w).reshape(-1)))
        assert np.array_equal(np.sort(order[: pruned[list(weights).index(name)]]), np.flatnonzero(~got[name]))


def test_gupta_and_reserve_rules_keep_the_same_layers_alive_but_differ():
    weights = _he(VGG, seed=1)
    masks = {name: np.ones(w.shape, bool) for name, w in weights.items()}
    n = sum(w.size for w in weights.values())
    k, m = round(0.95 * n), int(0.001 * n)
    gupta = F.select(F.GlobalMP(m, rule="gupta"), weights, None, masks, k)
    reserve = F.select(F.GlobalMP(m), weights, None, masks, k)
    assert all(gupta[x].any() and reserve[x].any() for x in weights)
    assert sum(int((~reserve[x]).sum()) for x in weights) == k  # reserve: exact
    assert k - len(weights) < sum(int((~gupta[x]).sum()) for x in weights) <= k  # gupta: floor per layer
    assert any(gupta[x].sum() != reserve[x].sum() for x in weights)


def test_an_infeasible_gupta_threshold_is_an_error_and_changes_nothing():
    pruner = F.Pruner(F.GlobalMP(40, rule="gupta"), F.OneShotSchedule(0.9))
    weights = _he([(10, 10), (8, 8)])
    pruner.init_masks(weights)
    with pytest.raises(F.UnreachableTargetError, match=r"min_keep=40 is infeasible with rule='gupta'"):
        pruner.prune(weights)
    assert all(m.all() for m in pruner.masks.values())


def test_bad_rule_and_granet_rates_name_the_value():
    with pytest.raises(F.ConfigError, match="rule='authors'"):
        F.GlobalMP(3, rule="authors")
    with pytest.raises(F.ConfigError, match="initial=1.5"):
        F.GraNet(100, initial=1.5)
    with pytest.raises(F.ConfigError, match="minimum=0.6"):
        F.GraNet(100, initial=0.5, minimum=0.6)
    with pytest.raises(F.ConfigError, match="total_steps=0"):
        F.GraNet(0)
    assert F.method_from_config(F.GraNet(7, 0.4).to_config()) == F.GraNet(7, 0.4)
    assert F.method_from_config(F.GlobalMP(3, rule="gupta").to_config()) == F.GlobalMP(3, rule="gupta")


@pytest.mark.filterwarnings("ignore:fggp.*layer collapse")
def test_granet_counts_are_exact_after_every_event_and_masks_regrow():
    rng = np.random.default_rng(0)
    shapes = {"a": (30, 20), "b": (20, 10), "c": (10,)}
    schedule = F.PolynomialSchedule(0.0, 0.9, 0, 40, 5)
    pruner = F.Pruner(F.GraNet(total_steps=60), schedule)
    pruner.init_masks({n: np.zeros(s, np.float32) for n, s in shapes.items()})
    n_total, regrown = sum(math.prod(s) for s in shapes.values()), 0
    for _ in range(60):
        weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
        grads = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
        before = {n: m.copy() for n, m in pruner.masks.items()}
        report = pruner.on_step(weights, grads)
        if report is not None:
            assert report.pruned == round(n_total * schedule.sparsity(pruner.step))  # exact, every event
            regrown += sum(int((pruner.masks[n] & ~before[n]).sum()) for n in shapes)
    assert regrown > 0  # masks do not only shrink


def test_granet_regrows_the_largest_gradients_among_pruned_entries():
    w = {"a": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.0, 0.0], np.float32)}
    g = {"a": np.array([0, 0, 0, 0, 0, 0, 5.0, 1.0], np.float32)}
    m = {"a": np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)}
    method = F.GraNet(10, initial=0.5, minimum=0.5)  # r = 0.5: ceil(0.5 * 4) = 2 swapped after pruning 2
    got = F.select(method, w, g, m, 2, step=1)["a"]
    # prune 0.1, 0.2; remove 0.3, 0.4 (ceil(0.5 * 4)); regrow index 6 (|g| = 5) then index 7 (|g| = 1)
    assert got.tolist() == [False, False, False, False, True, True, True, True]


def test_layerwise_keeps_one_entry_per_tensor_unless_empty_is_allowed():
    shapes = {"tiny": (2,), "big": (100,)}
    assert F.layer_targets(shapes, 0.8) == {"tiny": 1, "big": 80}
    assert F.layer_targets(shapes, 0.8, allow_empty=True) == {"tiny": 2, "big": 80}
    weights = {n: np.ones(s, np.float32) for n, s in shapes.items()}
    for allow, kept in ((False, 1), (True, 0)):
        pruner = F.Pruner(F.Magnitude(), F.OneShotSchedule(0.8), scope="layerwise", allow_empty=allow)
        pruner.init_masks(weights)
        pruner.prune(weights)
        assert int(pruner.masks["tiny"].sum()) == kept
    with pytest.raises(F.ConfigError, match="allow_empty"):
        F.Pruner(F.Magnitude(), F.OneShotSchedule(0.8), allow_empty="yes")


def test_a_global_collapse_warns_and_is_reported_and_global_mp_never_collapses():
    weights = {"small": np.full((4,), 1e-3, np.float32), "big": np.ones((100,), np.float32)}
    pruner = F.Pruner(F.Magnitude(), F.OneShotSchedule(0.5))
    pruner.init_masks(weights)
    with pytest.warns(RuntimeWarning, match=r"pruned every entry of \['small'\]"):
        pruner.prune(weights)
    assert pruner.layer_report()["small"]["collapsed"] and not pruner.layer_report()["big"]["collapsed"]
    for rule in F.methods.GLOBAL_MP_RULES:
        got = F.select(F.GlobalMP(0, rule=rule), weights, None, {n: np.ones(w.shape, bool) for n, w in weights.items()},
                       52)
        assert got["small"].sum() >= 1
