"""fggp.jax.select_jit (one compiled program, k and step traced) equals fggp_core.select.

The eager ``fggp.jax.select`` is covered by tests/test_cross_backend.py through backend.py;
here the jitted twin gets the same shared strategies, plus the executor's own edge cases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import fggp.jax as fj
import fggp_core as F
from tests.harness import assert_same_masks
from tests.strategies import DTYPES, cases


def held(arrays):
    """The values JAX holds (float64 -> float32 without x64)."""
    return None if arrays is None else {n: np.asarray(jnp.asarray(a)) for n, a in arrays.items()}


def core_or_error(case, weights, grads, masks):
    try:
        return F.select(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        return type(error)


@settings(max_examples=30)
@given(case=cases(dtypes=DTYPES))
def test_select_jit_equals_core_select(case):
    weights, grads, masks = held(case.weights), held(case.grads), held(case.masks)
    expected = core_or_error(case, weights, grads, masks)
    try:
        got = fj.select_jit(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        assert type(error) is expected, f"select_jit raised {type(error).__name__}, core gave {expected}"
        return
    assert not isinstance(expected, type), f"core raised {expected.__name__}, select_jit did not"
    assert_same_masks(got, expected)


def test_subnormal_scores_keep_their_order_despite_xla_flushing_them():
    """XLA on CPU treats subnormal floats as 0 in arithmetic; scores compare as integer bits."""
    tiny = np.array([1e-45, 0.0, 3e-45, 1e-40, -0.0, 2e-45, -1e-45], np.float32)
    weights, masks = {"w": tiny}, {"w": np.ones(tiny.size, bool)}
    for k in range(tiny.size + 1):
        expected = F.select(F.Magnitude(), weights, None, masks, k)
        assert_same_masks(fj.select(F.Magnitude(), weights, None, masks, k), expected)
        assert_same_masks(fj.select_jit(F.Magnitude(), weights, None, masks, k), expected)


@pytest.mark.parametrize("k", [0, 1, 7, 64])
def test_kth_value_with_a_traced_k_is_the_sorted_entry(k):
    x = jnp.asarray(np.random.default_rng(k).integers(0, 5, 64).astype(np.float32))
    bits = fj.JAX.flat_score([x], None, "float32")
    got = jax.jit(fj.JAX.kth_value)(bits, jnp.int32(k))
    expected = -1 if k == 0 else int(np.sort(np.asarray(bits))[k - 1])
    assert int(got) == expected


def test_select_traced_reports_nonfinite_instead_of_raising():
    w = [jnp.asarray([1.0, np.nan, 2.0]), jnp.asarray([[3.0, 4.0]])]
    m = [jnp.ones(3, bool), jnp.ones((1, 2), bool)]
    run = jax.jit(lambda w, m, k: fj.select_traced(F.Magnitude(), "global", w, None, m, k, jnp.int32(1)))
    new, status = run(w, m, jnp.int32(2))
    assert list(np.asarray(status)) == [1, 0, 1, 0]  # non-finite, tensor 0, one entry, magnitude
    assert all(bool(jnp.all(a == b)) for a, b in zip(new, m)), "a refused selection leaves masks as they were"
