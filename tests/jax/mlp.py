"""A small MLP problem shared by the wrap tests: params, a loss and a jitted train step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def init_params(seed: int = 0, sizes=(12, 24, 16, 5)) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"dense{i}"] = {
            "kernel": jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32),
            "bias": jnp.zeros(b, jnp.float32),
        }
    return params


def batch(seed: int = 1, n: int = 48, features: int = 12, classes: int = 5) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((n, features)), jnp.float32), jnp.asarray(rng.integers(0, classes, n))


def loss(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    layers = sorted(params)
    for name in layers:
        x = x @ params[name]["kernel"] + params[name]["bias"]
        if name != layers[-1]:
            x = jax.nn.relu(x)
    return optax.softmax_cross_entropy_with_integer_labels(x, y).mean()


def train_step(tx: optax.GradientTransformation):
    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def kernels(tree: dict[str, Any]) -> dict[str, Any]:
    return {f"['{layer}']['kernel']": tree[layer]["kernel"] for layer in sorted(tree)}


def pruned_count(masks: dict[str, Any]) -> int:
    return sum(int((~np.asarray(m)).sum()) for m in jax.tree.leaves(masks))
