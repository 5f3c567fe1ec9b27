"""fggp.jax.wrap with Flax: Linen params dicts and NNX (nnx.Optimizer), under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fggp.jax as fj
import fggp_core as F
from tests.jax.mlp import batch

nn = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

SCHEDULE = F.PolynomialSchedule(0.0, 0.8, begin_step=2, end_step=14, frequency=3)
TARGET = round((12 * 24 + 24 * 5) * 0.8)


def test_linen_params_reach_the_target_with_pruned_kernels_zero():
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.LayerNorm()(jax.nn.relu(nn.Dense(24)(x)))
            return nn.Dense(5)(x)

    model, (x, y) = MLP(), batch()
    params = model.init(jax.random.key(0), x)["params"]
    tx = fj.wrap(optax.adam(1e-2), F.FGGP(0.5), SCHEDULE)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()  # noqa: E731
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(15):
        params, state = step(params, state)
    masks = fj.masks(state)
    assert masks["LayerNorm_0"]["scale"] is None and masks["Dense_0"]["bias"] is None
    kernels = {n: np.asarray(masks[n]["kernel"]) for n in ("Dense_0", "Dense_1")}
    assert sum(int((~m).sum()) for m in kernels.values()) == TARGET
    for name, m in kernels.items():
        assert np.all(np.asarray(params[name]["kernel"])[~m] == 0.0)


def test_nnx_optimizer_prunes_the_module_in_place():
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(12, 24, rngs=rngs)
            self.out = nnx.Linear(24, 5, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))

    model, (x, y) = MLP(nnx.Rngs(0)), batch()
    optimizer = nnx.Optimizer(model, fj.wrap(optax.sgd(0.1, momentum=0.9), F.Magnitude(), SCHEDULE), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()  # noqa: E731
        optimizer.update(model, nnx.grad(loss)(model))

    for _ in range(15):
        step(model, optimizer)
    masks = nnx.to_pure_dict(fj.masks(optimizer.opt_state))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert masks["hidden"]["bias"] is None
    assert sum(int((~np.asarray(masks[n]["kernel"])).sum()) for n in ("hidden", "out")) == TARGET
    for name in ("hidden", "out"):
        pruned = ~np.asarray(masks[name]["kernel"])
        assert np.all(np.asarray(params[name]["kernel"])[pruned] == 0.0)
        assert jnp.dtype(params[name]["kernel"].dtype) == jnp.float32


def test_embeddings_are_not_pruned_by_default_in_linen_and_nnx():
    class Linen(nn.Module):
        @nn.compact
        def __call__(self, ids):
            return nn.Dense(3)(nn.Embed(10, 4)(ids))

    class Nnx(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(10, 4, rngs=rngs)
            self.dense = nnx.Linear(4, 3, rngs=rngs)

    tx = fj.wrap(optax.sgd(0.1), F.Magnitude(), SCHEDULE)
    linen = Linen().init(jax.random.key(0), jnp.zeros(2, jnp.int32))["params"]
    assert list(fj.layer_report(tx.init(linen))) == ["['Dense_0']['kernel']"]
    optimizer = nnx.Optimizer(Nnx(nnx.Rngs(0)), tx, wrt=nnx.Param)
    assert [path for path in fj.layer_report(optimizer.opt_state) if "embed" in path] == []
    assert any("dense" in path for path in fj.layer_report(optimizer.opt_state))
