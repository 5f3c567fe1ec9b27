"""fggp_core.select against the brute-force oracle, and the properties SPEC promises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fggp_core as F
from tests import oracle
from tests.strategies import Case, cases


def run(fn, case: Case):
    try:
        return fn(case.method, case.weights, case.grads, case.masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        return type(error)


def snapshot(arrays):
    return None if arrays is None else {n: np.array(a, copy=True) for n, a in arrays.items()}


@settings(max_examples=300)
@given(cases())
def test_select_equals_a_full_stable_sort_by_score_then_index(case):
    expected = run(oracle.select, case)
    got = run(F.select, case)
    if isinstance(expected, type):
        assert got is expected
        return
    assert not isinstance(got, type), got
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@given(cases(allow_nonfinite=False))
def test_select_prunes_exactly_k_more_never_unprunes_and_leaves_inputs_alone(case):
    before = snapshot(case.weights), snapshot(case.grads), snapshot(case.masks)
    got = run(F.select, case)
    if got is F.UnreachableTargetError:
        assert isinstance(case.method, F.GlobalMP)
        return
    for name, old in case.masks.items():
        assert got[name].dtype == np.bool_ and got[name].shape == old.shape
        assert not (got[name] & ~old).any(), "a pruned entry came back"
    if case.scope == "global":
        assert sum(int(case.masks[n].sum() - got[n].sum()) for n in got) == case.k
    else:
        assert all(int(case.masks[n].sum() - got[n].sum()) == case.k[n] for n in got)
    for original, now in zip(before, (case.weights, case.grads, case.masks)):
        if original is not None:
            for name in original:
                np.testing.assert_array_equal(original[name], now[name])


@given(cases(allow_nonfinite=False), st.sampled_from([(0.0, F.Gradient()), (1.0, F.Magnitude())]))
def test_fggp_rate_ends_are_the_single_criterion_methods(case, end):
    rate, single = end
    grads = case.grads or {n: np.ones_like(w) for n, w in case.weights.items()}
    fggp = F.select(F.FGGP(rate), case.weights, grads, case.masks, case.k, scope=case.scope)
    alone = F.select(single, case.weights, grads, case.masks, case.k, scope=case.scope)
    for name in fggp:
        np.testing.assert_array_equal(fggp[name], alone[name])


@given(cases(allow_nonfinite=False), st.integers(1, 5))
def test_global_mp_minimum_threshold_never_empties_a_layer(case, min_keep):
    masks, weights = case.masks, case.weights
    reachable = sum(int(m.sum()) - min(min_keep, int(m.sum())) for m in masks.values())
    k = min(reachable, case.k if isinstance(case.k, int) else reachable)
    got = F.select(F.GlobalMP(min_keep), weights, None, masks, k)
    for name, mask in masks.items():
        assert got[name].sum() >= min(min_keep, int(mask.sum())), name


def test_min_keep_that_makes_the_target_unreachable_is_an_error():
    w = {"a": np.arange(4, dtype=np.float32), "b": np.arange(4, dtype=np.float32)}
    m = {n: np.ones(4, dtype=bool) for n in w}
    with pytest.raises(F.UnreachableTargetError, match="min_keep=3"):
        F.select(F.GlobalMP(3), w, None, m, 3)
    assert F.select(F.GlobalMP(3), w, None, m, 2)["a"].sum() == 3


def test_ties_go_to_the_lower_canonical_index_and_negative_zero_equals_zero():
    w = {"a": np.array([1.0, -0.0, 0.0], np.float32), "b": np.array([0.0, 1.0], np.float32)}
    m = {n: np.ones_like(x, dtype=bool) for n, x in w.items()}
    got = F.select(F.Magnitude(), w, None, m, 2)
    np.testing.assert_array_equal(got["a"], [True, False, False])
    np.testing.assert_array_equal(got["b"], [True, True])
    got = F.select(F.Magnitude(), w, None, m, 4)  # the three zeros, then the first 1.0
    np.testing.assert_array_equal(got["a"], [False, False, False])
    np.testing.assert_array_equal(got["b"], [False, True])


def test_mixed_float32_and_float64_scores_compare_exactly_in_float64():
    # 1 + 2**-30 is not a float32; as float64 it is larger than the float32 1.0.
    w = {"a": np.array([1.0 + 2.0**-30], np.float64), "b": np.array([1.0], np.float32)}
    m = {n: np.ones(1, dtype=bool) for n in w}
    got = F.select(F.Magnitude(), w, None, m, 1)
    assert got["a"][0] and not got["b"][0]


def test_taylor_rounds_the_product_once_in_float32():
    w = {"a": np.array([3.0, 1.0 + 2.0**-12], np.float16)}
    g = {"a": np.array([1.0 / 3.0, 1.0], np.float16)}
    score = np.abs(w["a"].astype(np.float32) * g["a"].astype(np.float32))
    got = F.select(F.Taylor(), w, g, {"a": np.ones(2, dtype=bool)}, 1)
    assert got["a"][int(np.argmax(score))] and not got["a"][int(np.argmin(score))]


def test_fggp_pool_is_gradient_first_then_magnitude():
    # |g| picks the pool {0, 1} (rate 0.5 of 4); inside it the smaller |w| is entry 1,
    # although entry 3 has the smallest |w| overall.
    w = {"a": np.array([0.5, 0.4, 0.9, 0.1], np.float32)}
    g = {"a": np.array([0.0, 0.1, 5.0, 6.0], np.float32)}
    got = F.select(F.FGGP(0.5), w, g, {"a": np.ones(4, dtype=bool)}, 1)
    np.testing.assert_array_equal(got["a"], [True, False, True, True])


def test_blockwise_tie_scan_crosses_block_boundaries(monkeypatch):
    monkeypatch.setattr(F.NumpyBackend, "block", 7)
    w = {"a": np.zeros(50, np.float32), "b": np.zeros(30, np.float32)}
    m = {n: np.ones(x.shape, dtype=bool) for n, x in w.items()}
    for k in (0, 1, 6, 7, 8, 49, 50, 51, 80):
        got = F.select(F.Magnitude(), w, None, m, k)
        flat = np.concatenate([got["a"], got["b"]])
        assert not flat[:k].any() and flat[k:].all(), k


def test_k_equal_to_the_active_set_prunes_everything_active():
    w = {"a": np.array([[1.0, 2.0], [3.0, np.nan]], np.float32)}
    m = {"a": np.array([[True, False], [True, False]])}
    got = F.select(F.Magnitude(), w, None, m, 2)
    assert not got["a"].any()
