"""Prune a Flax NNX model on scikit-learn's digits with fggp.jax.wrap inside nnx.Optimizer.

    python examples/flax_digits.py [--sparsity 0.9] [--scope global|layerwise]

The wrapped optax transformation goes into ``nnx.Optimizer`` like any other; ``nnx.jit``
compiles the whole step, pruning events included. Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fggp
import fggp.jax


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(64, 256, rngs=rngs)
        self.norm = nnx.LayerNorm(256, rngs=rngs)  # its scale and bias are never pruned
        self.out = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jax.nn.relu(self.norm(self.hidden(x))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--scope", choices=fggp.SCOPES, default="global")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32) / 16.0, digits.target, test_size=0.25, random_state=0
    )
    batch, steps_per_epoch = 64, len(x_train) // 64
    total = args.epochs * steps_per_epoch
    schedule = fggp.PolynomialSchedule(0.0, args.sparsity, begin_step=0, end_step=int(0.6 * total), frequency=20)

    model = MLP(nnx.Rngs(0))
    tx = fggp.jax.wrap(optax.sgd(0.05, momentum=0.9), fggp.FGGP(0.5), schedule, scope=args.scope)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> None:
        def loss(model: MLP) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        optimizer.update(model, nnx.grad(loss)(model))

    @nnx.jit
    def accuracy(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(jnp.argmax(model(x), -1) == y)

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            train_step(model, optimizer, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]))
        if epoch % 10 == 9:
            sparsity = fggp.jax.sparsity(optimizer.opt_state)
            acc = float(accuracy(model, jnp.asarray(x_test), jnp.asarray(y_test)))
            print(f"epoch {epoch + 1:3d}  sparsity {sparsity:6.2%}  test accuracy {acc:6.2%}")
    fggp.jax.check(optimizer.opt_state)
    masks = nnx.to_pure_dict(fggp.jax.masks(optimizer.opt_state))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for layer in ("hidden", "out"):
        kernel, mask = np.asarray(params[layer]["kernel"]), np.asarray(masks[layer]["kernel"])
        assert np.all(kernel[~mask] == 0.0)
    for path, row in fggp.jax.layer_report(optimizer.opt_state).items():
        print(f"{path}: {row['size']} entries, density {row['density']:.3f}")
    print(f"norm layer masks: {masks['norm']}  (not prunable)")
    print(f"{total} steps in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
