"""The Pruner state machine: events, exact counts, layerwise/ERK targets, sparse start, resume."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fggp_core as F

SHAPES = {"conv.weight": (8, 3, 3, 3), "fc1.weight": (64, 216), "fc2.weight": (10, 64)}


def tensors(step: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(step)
    weights = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
    grads = {n: np.round(rng.normal(size=s), 1).astype(np.float32) for n, s in SHAPES.items()}  # many ties
    return weights, grads


def train(pruner: F.Pruner, steps: range, log: dict) -> None:
    for t in steps:
        weights, grads = tensors(t)
        weights = {n: w * pruner.masks.get(n, True) for n, w in weights.items()}
        before = {n: m.copy() for n, m in pruner.masks.items()}
        report = pruner.on_step(weights, grads)
        if report is not None:
            log[pruner.step] = {n: m.copy() for n, m in pruner.masks.items()}
            assert all(not (pruner.masks[n] & ~before[n]).any() for n in pruner.masks)


def make(method=None, **kwargs) -> F.Pruner:
    schedule = F.PolynomialSchedule(0.0, 0.9, begin_step=2, end_step=23, frequency=5)
    pruner = F.Pruner(method or F.FGGP(), schedule, **kwargs)
    pruner.init_masks({n: np.zeros(s, np.float32) for n, s in SHAPES.items()})
    return pruner


def test_events_prune_to_exactly_the_scheduled_count():
    pruner, log = make(), {}
    train(pruner, range(30), log)
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    assert sorted(log) == [2, 7, 12, 17, 22, 23]
    assert sum(pruner.pruned_counts().values()) == round(total * 0.9)
    assert pruner.sparsity() == round(total * 0.9) / total


def test_resumed_run_makes_the_same_masks_as_an_uninterrupted_one():
    straight, log_a = make(F.Random(7)), {}
    train(straight, range(30), log_a)
    first, log_b = make(F.Random(7)), {}
    train(first, range(13), log_b)
    state = first.state_dict()
    resumed = F.Pruner.from_state_dict(state)
    train(resumed, range(13, 30), log_b)
    assert sorted(log_a) == sorted(log_b)
    for step in log_a:
        for n in SHAPES:
            np.testing.assert_array_equal(log_a[step][n], log_b[step][n])


def test_state_dict_is_plain_data_and_refuses_another_configuration():
    pruner = make()
    state = pruner.state_dict()
    assert set(state) == {"version", "step", "masks", "config"}
    assert all(isinstance(m, np.ndarray) and m.dtype == np.bool_ for m in state["masks"].values())
    other = make(F.Magnitude())
    with pytest.raises(F.ConfigError, match="method"):
        other.load_state_dict(state)


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_layerwise_scope_follows_per_layer_targets(distribution):
    pruner, log = make(F.Magnitude(), scope="layerwise", distribution=distribution), {}
    train(pruner, range(30), log)
    targets = F.layer_targets(SHAPES, 0.9, distribution)
    assert pruner.pruned_counts() == targets
    if distribution == "erk":
        sparsities = F.layer_sparsities(SHAPES, 0.9, "erk")
        assert sparsities["fc1.weight"] > sparsities["conv.weight"]


def test_erk_keeps_the_total_and_caps_dense_layers():
    shapes = {"tiny": (2, 2), "big": (500, 500), "mid": (50, 40)}
    sparsities = F.layer_sparsities(shapes, 0.5, "erk")
    kept = sum((1 - s) * np.prod(shapes[n]) for n, s in sparsities.items())
    assert kept == pytest.approx(0.5 * sum(np.prod(s) for s in shapes.values()))
    assert sparsities["tiny"] == 0.0 and all(0 <= s < 1 for s in sparsities.values())


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_sparse_start_is_seeded_and_exact(distribution):
    start = F.SparseStart(0.5, distribution, seed=3)
    a, b = F.random_masks(SHAPES, start), F.random_masks(SHAPES, start)
    targets = F.layer_targets(SHAPES, 0.5, distribution)
    for n in SHAPES:
        np.testing.assert_array_equal(a[n], b[n])
        assert int((~a[n]).sum()) == targets[n]
    assert any((a[n] != F.random_masks(SHAPES, F.SparseStart(0.5, distribution, seed=4))[n]).any() for n in SHAPES)


def test_sparse_start_then_schedule_from_the_initial_sparsity():
    schedule = F.PolynomialSchedule(0.5, 0.9, 0, 10, 2)
    pruner = F.Pruner(F.FGGP(), schedule)
    pruner.init_masks({n: np.zeros(s, np.float32) for n, s in SHAPES.items()}, F.SparseStart(0.5, "erk", 1))
    log: dict = {}
    train(pruner, range(12), log)
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    assert sum(pruner.pruned_counts().values()) == round(total * 0.9)


def test_non_finite_event_raises_and_leaves_masks_or_is_skipped_with_a_report():
    pruner = make()
    pruner.step = 1
    weights, grads = tensors(0)
    grads["fc2.weight"][0, 0] = np.nan
    before = {n: m.copy() for n, m in pruner.masks.items()}
    with pytest.raises(F.NonFiniteScoreError, match="fc2.weight"):
        pruner.on_step(weights, grads)
    assert all((pruner.masks[n] == before[n]).all() for n in SHAPES)
    skipping = make(skip_nonfinite=True)
    skipping.step = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = skipping.on_step(weights, grads)
    assert report.skipped and "fc2.weight" in report.reason and caught
    assert skipping.sparsity() == 0.0


def test_global_mp_one_shot_event_now():
    pruner = F.Pruner(F.GlobalMP(min_keep=20), F.OneShotSchedule(0.98))
    weights, _ = tensors(0)
    pruner.init_masks(weights)
    report = pruner.prune(weights)
    assert report.step == 0 and report.pruned == round(report.total * 0.98)
    assert all(r["pruned"] <= r["size"] - 20 for r in pruner.layer_report().values())


def test_excluded_tensors_stay_dense_and_out_of_the_targets():
    schedule = F.PolynomialSchedule(0.0, 0.9, begin_step=2, end_step=23, frequency=5)
    pruner = F.Pruner(F.FGGP(), schedule, exclude=["conv.weight"])
    pruner.init_masks({n: np.zeros(s, np.float32) for n, s in SHAPES.items()})
    assert list(pruner.masks) == ["fc1.weight", "fc2.weight"]
    train(pruner, range(30), {})
    assert sum(pruner.pruned_counts().values()) == round(0.9 * (64 * 216 + 10 * 64))
    with pytest.raises(F.ConfigError, match="exclude"):
        F.Pruner(F.FGGP(), schedule, exclude=["nope"]).init_masks({"a": np.zeros(3, np.float32)})
