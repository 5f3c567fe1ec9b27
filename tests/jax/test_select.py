"""fggp.jax.select / select_jit and the JAX backend's primitives.

Both entry points run the core's one algorithm (``fggp_core.selection.run_groups``) with the
``JAX`` backend: ``select`` eagerly, ``select_jit`` as one compiled program (the code
``wrap``'s event branch runs). The shared properties against the core and the oracle run in
tests/test_cross_backend.py and tests/test_contract.py (``backend.py``, ``backend_jit.py``);
here: the primitives with traced arguments against ``NumpyBackend``, JAX's own edge cases
(subnormals, bfloat16, float64 rates without x64) and the count guard.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fggp.jax as fj
import fggp_core as F
from fggp.jax.backend import JaxBackend, rate_bits
from fggp_core.selection import NONFINITE, OK, kth_key
from tests.harness import assert_same_masks
from tests.strategies import DTYPES, cases

NP = F.NUMPY


def held(arrays):
    """The values JAX holds (float64 -> float32 without x64)."""
    return None if arrays is None else {n: np.asarray(jnp.asarray(a)) for n, a in arrays.items()}


@settings(max_examples=20)
@given(case=cases(dtypes=DTYPES))
def test_select_and_select_jit_equal_core_select_or_raise_its_error(case):
    assert_selects_like_core(case)


def assert_selects_like_core(case):
    """``fggp.jax.select`` and ``select_jit`` give the core's masks on the values JAX holds, or raise its error."""
    weights, grads, masks = held(case.weights), held(case.grads), held(case.masks)
    try:
        expected = F.select(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        expected = type(error)
    for select in (fj.select, fj.select_jit):
        try:
            got = select(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
        except F.FGGPError as error:
            assert type(error) is expected, f"{select.__name__} raised {type(error).__name__}, core gave {expected}"
            continue
        assert not isinstance(expected, type), f"core raised {expected.__name__}, {select.__name__} did not"
        assert_same_masks(got, expected)


def test_subnormal_scores_keep_their_order_despite_xla_flushing_them():
    """XLA on CPU treats subnormal floats as 0 in arithmetic; keys compare as integer bits."""
    tiny = np.array([1e-45, 0.0, 3e-45, 1e-40, -0.0, 2e-45, -1e-45], np.float32)
    weights, masks = {"w": tiny}, {"w": np.ones(tiny.size, bool)}
    for k in range(tiny.size + 1):
        expected = F.select(F.Magnitude(), weights, None, masks, k)
        assert_same_masks(fj.select(F.Magnitude(), weights, None, masks, k), expected)
        assert_same_masks(fj.select_jit(F.Magnitude(), weights, None, masks, k), expected)


def test_bfloat16_keys_are_the_exact_float32_keys_subnormals_included():
    bits = np.arange(0, 1 << 16, 7, dtype=np.uint16)
    values = bits.view(ml_dtypes.bfloat16)
    values = values[np.isfinite(values.astype(np.float32))]
    got = np.asarray(jax.jit(lambda x: fj.JAX.keys(x, None, "float32"))(jnp.asarray(values)))
    assert np.array_equal(got, NP.keys(values, None, "float32"))


@pytest.mark.parametrize("k", [0, 1, 7, 64])
def test_kth_key_with_a_traced_k_is_the_sorted_entry(k):
    x = np.random.default_rng(k).integers(0, 5, 64).astype(np.float32)
    run = jax.jit(lambda x, k: kth_key(fj.JAX, [fj.JAX.keys(x, None, "float32")], k, "float32"))
    expected = -1 if k == 0 else int(np.sort(NP.keys(x, None, "float32"))[k - 1])
    assert int(run(jnp.asarray(x), fj.JAX.scalar(k))) == expected


@given(histogram=st.lists(st.integers(0, 50), min_size=1, max_size=64), data=st.data())
@settings(max_examples=40)
def test_pick_under_jit_is_numpys_searchsorted(histogram, data):
    h = np.asarray(histogram, np.int64)
    rank = data.draw(st.integers(1, max(1, int(h.sum()))))
    digit, within = jax.jit(fj.JAX.pick)(jnp.asarray(h, jnp.int32), fj.JAX.scalar(rank))
    expected = NP.pick(h, np.int64(rank))
    assert (int(digit), int(within)) == (int(expected[0]), int(expected[1]))


def test_floor_mul_is_the_hosts_float64_multiply_even_without_x64():
    """A float32 multiply would be off by one on many of these; the rate crosses jit as bits."""
    rng = np.random.default_rng(0)
    rates = np.concatenate([rng.random(2000), [0.0, 1.0, 0.1, 0.3, 1 / 3, 0.7]])
    ns = np.concatenate([rng.integers(0, 2**31 - 1, 2000), [2**31 - 1, 10, 10, 10, 3, 10]])
    run = jax.jit(jax.vmap(fj.JAX.floor_mul))
    got = np.asarray(run(rate_bits(rates), jnp.asarray(ns, jnp.int32)))
    expected = [math.floor(float(r) * float(n)) for r, n in zip(rates, ns)]
    assert got.dtype == np.int32 and got.tolist() == expected


def test_counts_are_int32_without_x64_and_int64_with_it():
    mask = jnp.ones(5, bool)
    assert fj.JAX.count(mask).dtype == jnp.int32 and fj.JAX.max_count == 2**31 - 1
    with jax.enable_x64(True):
        assert fj.JAX.count(mask).dtype == jnp.int64 and fj.JAX.max_count == 2**63 - 1


def test_run_traced_reports_nonfinite_scores_instead_of_raising():
    w = [jnp.asarray([1.0, np.nan, 2.0]), jnp.asarray([[3.0, 4.0]])]
    m = [jnp.ones(3, bool), jnp.ones((1, 2), bool)]
    run = jax.jit(lambda w, m, k: fj.run_traced(F.Magnitude(), "global", w, None, m, k, 0.0, jnp.int32(1)))
    _, status = run(w, m, jnp.asarray([2], jnp.int32))
    assert [int(v) for v in status] == [NONFINITE, 0, 1, 0]  # tensor 0, one entry, stage 0 (magnitude)
    _, status = run([jnp.nan_to_num(w[0]), w[1]], m, jnp.asarray([2], jnp.int32))
    assert int(status.code) == OK


def test_the_count_guard_names_the_limit_in_select_select_jit_and_wrap(monkeypatch):
    """JAX's int32 counts stop at 2**31 - 1; a backend whose counts stop at 100 shows the guard."""
    monkeypatch.setattr(JaxBackend, "max_count", 100)
    too_many = {"a": np.ones((101,), np.float32)}
    masks = {"a": np.ones((101,), bool)}
    for select in (fj.select, fj.select_jit):
        with pytest.raises(F.ConfigError, match="at most 100"):
            select(F.Magnitude(), too_many, None, masks, 1)
    with pytest.raises(F.ConfigError, match="at most 100"):
        fj.wrap(optax.sgd(0.1), F.Magnitude(), F.OneShotSchedule(0.5, step=1)).init({"w": jnp.ones((11, 10))})
    fits = {"a": np.ones((100,), np.float32)}
    assert int((~np.asarray(fj.select_jit(F.Magnitude(), fits, None, {"a": masks["a"][:100]}, 3)["a"])).sum()) == 3
