"""Run by test_sharding.py in a fresh process with 8 simulated CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before JAX starts).

Prints one line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import fggp.jax as fj
import fggp_core as F
from tests.harness import assert_same_masks
from tests.jax.mlp import loss

assert jax.device_count() == 8, jax.devices()
MESH = Mesh(np.array(jax.devices()), ("data",))
ROWS = NamedSharding(MESH, P("data"))
REPLICATED = NamedSharding(MESH, P())


def selection_on_sharded_arrays_equals_unsharded() -> None:
    rng = np.random.default_rng(0)
    shapes = {"a": (64, 40), "b": (48, 8), "c": (16,)}
    weights = {n: (rng.integers(-20, 20, size=s) / 8).astype(np.float32) for n, s in shapes.items()}
    grads = {n: (rng.integers(-5, 5, size=s) / 4).astype(np.float32) for n, s in shapes.items()}
    masks = {n: rng.random(s) < 0.8 for n, s in shapes.items()}
    k = int(sum(m.sum() for m in masks.values()) // 3)
    shard = lambda tree: {n: jax.device_put(a, ROWS) for n, a in tree.items()}  # noqa: E731
    w, g, m = shard(weights), shard(grads), shard(masks)
    assert len(w["a"].sharding.device_set) == 8
    for method in (F.FGGP(0.5), F.Magnitude(), F.Taylor(), F.GlobalMP(10), F.Random(2)):
        expected = F.select(method, weights, grads, masks, k, step=3)
        assert_same_masks(fj.select(method, w, g, m, k, step=3), expected)
        assert_same_masks(fj.select_jit(method, w, g, m, k, step=3), expected)
    print("sharded selection == unsharded: ok")


def data_parallel_training_reaches_the_target() -> None:
    rng = np.random.default_rng(1)
    sizes = (16, 64, 32, 8)
    params = {
        f"dense{i}": {
            "kernel": jax.device_put(rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a), ROWS),
            "bias": jax.device_put(np.zeros(b, np.float32), REPLICATED),
        }
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    }
    x = jax.device_put(rng.standard_normal((64, 16)).astype(np.float32), ROWS)
    y = jax.device_put(rng.integers(0, 8, 64), ROWS)
    schedule = F.PolynomialSchedule(0.0, 0.9, begin_step=1, end_step=10, frequency=2)
    tx = fj.wrap(optax.adam(1e-2), F.FGGP(0.5), schedule)
    state = tx.init(params)

    @jax.jit
    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(12):
        # On a 2-core machine, dispatching the next step (whose collectives rendezvous across
        # the 8 simulated devices) before the last finished can deadlock XLA's CPU collectives
        # (rendezvous timeout, exit 134): block on every step's result.
        params, state = jax.block_until_ready(step(params, state, x, y))
    masks = fj.masks(state)
    n = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    pruned = sum(int((~np.asarray(masks[layer]["kernel"])).sum()) for layer in params)
    assert pruned == round(0.9 * n), (pruned, round(0.9 * n))
    for layer in params:
        kernel, mask = np.asarray(params[layer]["kernel"]), np.asarray(masks[layer]["kernel"])
        assert np.all(kernel[~mask] == 0.0), layer
        assert len(params[layer]["kernel"].sharding.device_set) == 8, "params stay sharded"
        assert masks[layer]["kernel"].sharding.is_equivalent_to(params[layer]["kernel"].sharding, 2), layer
    print(f"data-parallel run: {pruned} of {n} pruned, pruned params zero: ok")


if __name__ == "__main__":
    selection_on_sharded_arrays_equals_unsharded()
    data_parallel_training_reaches_the_target()
