"""The backend contract: every backend, eager and jitted, against the brute-force oracle.

``tests/oracle.py`` implements SPEC's selection with a full stable sort and shares no code
with ``fggp_core``; every backend in ``tests/harness.py`` (NumPy, PyTorch, JAX eager, JAX
under ``jax.jit`` as ``fggp.jax.wrap`` runs it, Keras, the one-file Array API example) must
give the oracle's masks exactly, and raise the oracle's error class where it raises. The
primitives themselves are checked against the NumPy reference backend: same keys, same
histograms, same k-th key, same first-r-true, counts that are backend scalars.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fggp_core as F
from fggp_core.selection import kth_key
from tests import oracle
from tests.harness import assert_same_masks, backend_params, held_values, on_backend
from tests.strategies import DTYPES, cases

SELECTS = backend_params()
PRIMITIVES = backend_params(primitives=True)


def _fit_dtypes(module, case):
    """Backends without a dtype (e.g. the Array API has no bfloat16) get float32 instead."""
    if any(a.dtype.name not in module.DTYPES for a in case.weights.values()):
        case.weights = {n: a.astype(np.float32) for n, a in case.weights.items()}
        if case.grads is not None:
            case.grads = {n: a.astype(np.float32) for n, a in case.grads.items()}
    return case


@pytest.mark.parametrize("backend", SELECTS)
@given(case=cases(dtypes=DTYPES))
def test_select_equals_the_brute_force_oracle(backend, case):
    module, device = backend
    case = _fit_dtypes(module, case)
    weights, grads, masks = (on_backend(module, device, a) for a in (case.weights, case.grads, case.masks))
    held = [held_values(module, a) for a in (weights, grads, masks)]
    try:
        expected = oracle.select(case.method, *held, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        expected = type(error)
    try:
        got = module.select(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        assert type(error) is expected, f"backend raised {type(error).__name__}, the oracle gave {expected}"
        return
    assert not isinstance(expected, type), f"the oracle raised {expected.__name__}, the backend did not"
    assert_same_masks(got, expected, module.to_numpy)


@pytest.mark.parametrize("backend", SELECTS)
def test_heavy_ties_across_tensors_match_the_oracle(backend):
    """30k entries over three tensors and 17 distinct values: the k-th key's ties span tensors."""
    module, device = backend
    rng = np.random.default_rng(1)
    shapes = {"a": (60, 200), "b": (40, 250), "c": (5000,)}
    weights = {n: (rng.integers(-8, 9, size=s) / 4).astype(np.float32) for n, s in shapes.items()}
    grads = {n: (rng.integers(-4, 5, size=s) / 2).astype(np.float32) for n, s in shapes.items()}
    masks = {n: rng.random(s) < 0.9 for n, s in shapes.items()}
    k = int(sum(m.sum() for m in masks.values()) * 2 // 5)
    arrays = [on_backend(module, device, a) for a in (weights, grads, masks)]
    methods = (F.FGGP(0.5), F.Magnitude(), F.Taylor(), F.GlobalMP(300), F.Random(3))
    for method in (*methods, F.GlobalMP(3000, rule="gupta"), F.GraNet(20)):
        expected = oracle.select(method, weights, grads, masks, k, step=7)
        assert_same_masks(module.select(method, *arrays, k, step=7), expected, module.to_numpy)


# -- the primitives, each against the NumPy reference ------------------------------------------------

finite = st.floats(0, 3.0000000054977558e38, allow_nan=False, width=32) | st.sampled_from(
    [0.0, -0.0, 1e-45, 1e-40, 1.0, 2.0]
)
values = st.lists(finite, min_size=1, max_size=200)


def _host(be, x):
    return np.asarray(be.to_host(x))


@pytest.mark.parametrize("backend", PRIMITIVES)
@given(xs=values, data=st.data())
def test_keys_order_like_the_scores_and_kth_key_is_the_sorted_entry(backend, xs, data):
    module, device = backend
    be = module.backend()
    w = np.asarray(xs, np.float32) * np.where(np.arange(len(xs)) % 2, -1, 1).astype(np.float32)
    keys = be.keys(module.to_backend(w, device), None, "float32")
    expected = F.NUMPY.keys(w, None, "float32")
    assert np.array_equal(_host(be, keys), expected)
    k = data.draw(st.integers(0, len(xs)))
    got = int(_host(be, kth_key(be, [keys], be.scalar(k, keys), "float32")))
    assert got == (-1 if k == 0 else int(np.sort(expected)[k - 1]))


@pytest.mark.parametrize("backend", PRIMITIVES)
@given(flags=st.lists(st.booleans(), max_size=300), r=st.integers(-2, 310))
def test_first_true_keeps_exactly_the_first_r_true_entries(backend, flags, r):
    module, device = backend
    be = module.backend()
    mask = np.asarray(flags, bool)
    expected = mask & (np.cumsum(mask) <= r)
    like = module.to_backend(mask, device)
    got = _host(be, be.first_true(module.to_backend(mask, device), be.scalar(r, like)))
    assert np.array_equal(got, expected)
    count = be.count(like)
    assert not isinstance(count, (int, np.ndarray)) or isinstance(count, np.integer), "counts are backend scalars"
    assert int(_host(be, count)) == int(mask.sum())


@pytest.mark.parametrize("backend", PRIMITIVES)
@given(xs=values, prefix_digit=st.integers(0, 3))
def test_histograms_and_exclusion_match_numpy(backend, xs, prefix_digit):
    module, device = backend
    be = module.backend()
    w = np.asarray(xs, np.float32)
    keys_np = F.NUMPY.keys(w, None, "float32")
    among = np.arange(w.size) % 3 != 0
    keys = be.exclude(be.keys(module.to_backend(w, device), None, "float32"), module.to_backend(among, device))
    np_keys = F.NUMPY.exclude(keys_np.copy(), among)
    assert np.array_equal(_host(be, keys) >= F.backend.INF_KEY["float32"], np_keys >= F.backend.INF_KEY["float32"])
    assert np.array_equal(_host(be, keys)[among], keys_np[among])
    width = be.digit_bits
    shift = 31 - 2 * width if 31 - 2 * width > 0 else 0
    prefix = int(np.sort(keys_np)[0]) & ~((1 << (shift + width)) - 1) if prefix_digit else 0
    got = _host(be, be.histogram(keys, shift, width, be.scalar(prefix, keys)))
    above = shift + width
    held = _host(be, keys).astype(np.int64)
    chosen = held[(held >> above) == (prefix >> above)] if above < 31 else held
    expected = np.bincount((chosen >> shift) & ((1 << width) - 1), minlength=1 << width)
    assert np.array_equal(got, expected)
    bad = int(_host(be, be.nonfinite(keys, module.to_backend(among, device))))
    assert bad == 0


def test_the_count_guard_refuses_problems_beyond_a_backends_counts():
    """A backend whose counts stop at 100 (as JAX's int32 stop at 2**31 - 1) refuses 101 entries."""

    class Small(F.NumpyBackend):
        max_count = 100

    w = {"a": np.ones((101,), np.float32)}
    m = {"a": np.ones((101,), bool)}
    with pytest.raises(F.ConfigError, match="at most 100"):
        F.select(F.Magnitude(), w, None, m, 1, backend=Small())
    F.select(F.Magnitude(), {"a": w["a"][:100]}, None, {"a": m["a"][:100]}, 1, backend=Small())
