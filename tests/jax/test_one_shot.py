"""An event at step 0 (``OneShotSchedule(s)``'s default) happens before the first update, as on every adapter
(issue 14, item 4): ``init`` selects on the params it is given; the first update zeroes what it pruned."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fggp.jax as fj
import fggp_core as F

PARAMS = {
    "a": {"w": jnp.asarray(np.random.default_rng(0).standard_normal((6, 8)), jnp.float32)},
    "b": {"w": jnp.asarray(np.random.default_rng(1).standard_normal((8, 3)), jnp.float32)},
}
N = 6 * 8 + 8 * 3


def host_masks(opt_state):
    return [np.asarray(m) for m in jax.tree.leaves(opt_state.masks)]


@pytest.mark.parametrize("method", [F.GlobalMP(min_keep=2), F.Magnitude(), F.Random(1)])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_one_shot_at_step_zero_prunes_the_params_given_to_init(method, jit):
    tx = fj.wrap(optax.sgd(0.1), method, F.OneShotSchedule(0.9))
    state = (jax.jit(tx.init) if jit else tx.init)(PARAMS)
    weights = {n: np.asarray(x) for n, x in zip(fj.leaf_names(PARAMS), jax.tree.leaves(PARAMS))}
    expected = F.select(method, weights, None, {n: np.ones(w.shape, bool) for n, w in weights.items()},
                        round(N * 0.9), step=0)
    assert all(np.array_equal(m, expected[n]) for n, m in zip(weights, host_masks(state)))
    assert fj.sparsity(state) == round(N * 0.9) / N
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, state = (jax.jit(tx.update) if jit else tx.update)(grads, state, PARAMS)
    params = optax.apply_updates(PARAMS, updates)
    for p, m in zip(jax.tree.leaves(params), host_masks(state)):
        assert np.all(np.asarray(p)[~m] == 0.0)  # the first update zeroes what the step-0 event pruned
    assert fj.sparsity(state) == round(N * 0.9) / N  # and nothing more happens
    fj.check(state)


def test_a_gradient_method_with_an_event_at_step_zero_is_refused_at_init():
    tx = fj.wrap(optax.sgd(0.1), F.FGGP(0.5), F.OneShotSchedule(0.9))
    with pytest.raises(F.ConfigError, match="event at step 0.*no gradients"):
        tx.init(PARAMS)
    # nothing to prune at step 0 (the sparse start already holds the initial sparsity): accepted
    schedule = F.PolynomialSchedule(0.5, 0.9, begin_step=0, end_step=10, frequency=2)
    state = fj.wrap(optax.sgd(0.1), F.FGGP(0.5), schedule, sparse_start=F.SparseStart(0.5)).init(PARAMS)
    assert fj.sparsity(state) == round(N * 0.5) / N
