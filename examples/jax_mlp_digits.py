"""Prune an MLP on scikit-learn's digits with fggp.jax.wrap (pure JAX + optax), under jax.jit.

    python examples/jax_mlp_digits.py [--method fggp|magnitude|gradient] [--sparsity 0.9]

FGGP (gradient-first, fixed rate 0.5) takes the network from dense to 90 % sparse over the
first 60 % of training with the cubic schedule; pruned weights stay exactly zero. Runs in
well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fggp
import fggp.jax

METHODS = {"fggp": fggp.FGGP(0.5), "magnitude": fggp.Magnitude(), "gradient": fggp.Gradient()}


def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> dict:
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, sub = jax.random.split(key)
        params[f"dense{i}"] = {"kernel": jax.random.normal(sub, (a, b)) * jnp.sqrt(2.0 / a), "bias": jnp.zeros(b)}
    return params


def logits(params: dict, x: jax.Array) -> jax.Array:
    for i in range(len(params)):
        x = x @ params[f"dense{i}"]["kernel"] + params[f"dense{i}"]["bias"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(METHODS), default="fggp")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32) / 16.0, digits.target, test_size=0.25, random_state=0
    )
    batch, steps_per_epoch = 64, len(x_train) // 64
    total = args.epochs * steps_per_epoch
    schedule = fggp.PolynomialSchedule(0.0, args.sparsity, begin_step=0, end_step=int(0.6 * total), frequency=25)
    tx = fggp.jax.wrap(optax.adam(3e-3), METHODS[args.method], schedule)

    params = init_mlp(jax.random.key(0), (64, 256, 128, 10))
    state = tx.init(params)

    @jax.jit
    def train_step(params, state, x, y):
        grads = jax.grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    accuracy = jax.jit(lambda p, x, y: jnp.mean(jnp.argmax(logits(p, x), -1) == y))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            params, state = train_step(params, state, x_train[idx], y_train[idx])
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            acc = float(accuracy(params, x_test, y_test))
            print(f"epoch {epoch + 1:3d}  sparsity {fggp.jax.sparsity(state):6.2%}  test accuracy {acc:6.2%}")
    fggp.jax.check(state)  # raises if an event was skipped for NaN/inf scores
    masks = fggp.jax.masks(state)
    for layer, m in masks.items():
        assert np.all(np.asarray(params[layer]["kernel"])[~np.asarray(m["kernel"])] == 0.0)
    for path, row in fggp.jax.layer_report(state).items():  # path: jax.tree_util.keystr
        print(f"{path}: {row['size']} entries, {row['pruned']} pruned, density {row['density']:.3f}")
    print(f"{args.method}: {total} steps in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
