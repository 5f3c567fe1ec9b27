"""The JAX backend's block-wise primitives and its single-operation sums.

Tensors longer than ``fggp.jax.backend.BLOCK`` entries are scanned block by block (bounded
per-entry temporaries); here ``BLOCK`` is patched down to a few entries so the loop, the
remainder and the block edges are exercised on small arrays, against ``NumpyBackend``. The
sums over tensors (``reduce``, ``running``) are single XLA operations rather than chains of
adds; the compile-time check of that is in benchmarks/jax_compile.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fggp.jax as fj
import fggp.jax.backend as jb
import fggp_core as F
from tests.jax.test_select import assert_selects_like_core
from tests.strategies import cases

NP = F.NUMPY
SIZES = [0, 1, 7, 8, 9, 16, 17, 40]  # around the patched block of 8 entries


@pytest.fixture
def small_blocks(monkeypatch):
    jax.clear_caches()  # primitives traced with the real BLOCK must be traced again
    monkeypatch.setattr(jb, "BLOCK", 8)
    yield
    jax.clear_caches()


@pytest.mark.parametrize("n", SIZES)
def test_block_primitives_equal_numpys_at_every_block_edge(small_blocks, n):
    rng = np.random.default_rng(n)
    keys = rng.integers(0, 2**31 - 1, n, dtype=np.int32)
    keys[rng.random(n) < 0.2] = F.backend.INF_KEY["float32"]
    among = rng.random(n) < 0.7
    mask = rng.random(n) < 0.5
    prefix = np.int32(keys[0] if n else 0)
    for shift, width in ((20, 11), (9, 11), (0, 9)):
        got = jax.jit(fj.JAX.histogram, static_argnums=(1, 2))(jnp.asarray(keys), shift, width, jnp.asarray(prefix))
        assert np.array_equal(np.asarray(got), NP.histogram(keys, shift, width, np.int64(prefix)))
    assert int(fj.JAX.count(jnp.asarray(mask))) == int(mask.sum())
    assert int(fj.JAX.nonfinite(jnp.asarray(keys), jnp.asarray(among))) == int(NP.nonfinite(keys, among))
    for r in (-1, 0, 1, 3, n // 2, n):
        got = jax.jit(fj.JAX.first_true)(jnp.asarray(mask), fj.JAX.scalar(r))
        assert np.array_equal(np.asarray(got), NP.first_true(mask.copy(), np.int64(r))), r


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())  # the fixture's patch holds for every example: nothing to reset between them
def test_select_and_select_jit_equal_the_core_when_tensors_span_blocks(small_blocks, case):
    assert_selects_like_core(case)


@given(counts=st.lists(st.integers(0, 1000), min_size=1, max_size=12))
def test_running_and_reduce_are_the_plain_sums(counts):
    values = [jnp.asarray(c, jnp.int32) for c in counts]
    before, total = jax.jit(fj.JAX.running)(values)
    assert [int(b) for b in before] == [sum(counts[:i]) for i in range(len(counts))]
    assert int(total) == sum(counts)
    assert int(jax.jit(lambda v: fj.JAX.reduce(v, range(len(v))))(values)) == sum(counts)
    hist = [jnp.asarray(np.full(4, c), jnp.int32) for c in counts]
    assert np.array_equal(np.asarray(fj.JAX.reduce(hist, range(len(hist)))), np.full(4, sum(counts)))
