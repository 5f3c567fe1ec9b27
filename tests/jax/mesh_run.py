"""Run by test_mesh.py in a fresh process with 8 simulated CPU devices (XLA_FLAGS must be set
before JAX starts): selection on params sharded over a 4 x 2 mesh, per device (``shard_map``).

``python -m tests.jax.mesh_run PART`` with PART in select, wrap, hlo, refuse; prints one line
per check and exits non-zero on the first failure. Every jitted step is blocked on (DEVELOPERS.md).
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import fggp.jax as fj
import fggp_core as F
from fggp.jax.backend import rate_bits
from fggp.jax.selection import _compiled
from fggp.jax.sharded import collectives, layout_of
from tests.harness import assert_same_masks

assert jax.device_count() == 8, jax.devices()
MESH = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
# dim 0 over one axis, over both axes, replicated (2-D and 1-D): every supported layout at once
SPECS = {"a": P("data"), "b": P(("data", "model")), "c": P(), "d": P("data")}
SHAPES = {"a": (64, 40), "b": (64, 16), "c": (16, 32), "d": (512,)}  # the tally gathers 8 x 8 counts
BIG = ("all-gather", "all-to-all", "collective-permute")


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)  # values in steps of 1/8: many ties, decided by canonical order
    weights = {n: (rng.integers(-20, 20, size=s) / 8).astype(np.float32) for n, s in SHAPES.items()}
    grads = {n: (rng.integers(-5, 5, size=s) / 4).astype(np.float32) for n, s in SHAPES.items()}
    masks = {n: rng.random(s) < 0.8 for n, s in SHAPES.items()}
    return weights, grads, masks


def _shard(tree):
    return {n: jax.device_put(a, NamedSharding(MESH, SPECS[n])) for n, a in tree.items()}


def _same_sharding(masks, like) -> None:
    for n in like:
        assert masks[n].sharding.is_equivalent_to(like[n].sharding, len(SHAPES[n])), (n, masks[n].sharding)


def select() -> None:
    weights, grads, masks = _problem()
    w, g, m = _shard(weights), _shard(grads), _shard(masks)
    k = int(sum(x.sum() for x in masks.values()) // 3)
    per = {n: int(x.sum()) // 3 for n, x in masks.items()}
    methods = (F.FGGP(0.5), F.Magnitude(), F.Taylor(), F.GlobalMP(2), F.GlobalMP(3, rule="gupta"), F.Random(2))
    for method in methods:
        got = jax.block_until_ready(fj.select(method, w, g, m, k, step=3))  # routed to the sharded program
        assert_same_masks(got, F.select(method, weights, grads, masks, k, step=3))
        _same_sharding(got, w)
        print(f"select {method} global: ok")
    for method in (F.FGGP(0.5), F.Magnitude(), F.Random(2)):
        got = jax.block_until_ready(fj.select_jit(method, w, g, m, per, scope="layerwise", step=4))
        assert_same_masks(got, F.select(method, weights, grads, masks, per, scope="layerwise", step=4))
        _same_sharding(got, w)
        print(f"select {method} layerwise: ok")


def _train(method, scope: str, sharded: bool, steps: int = 4):
    """``steps`` updates of wrap(adam) with fixed per-step gradients (elementwise math only, so the
    sharded and unsharded runs see bit-identical weights): the final masks and params."""
    weights, _, _ = _problem(1)
    params = _shard(weights) if sharded else {n: jax.numpy.asarray(a) for n, a in weights.items()}
    prunable = ["['a']", "['b']", "['c']"]
    schedule = F.PolynomialSchedule(0.0, 0.8, begin_step=1, end_step=steps, frequency=1)
    tx = fj.wrap(optax.adam(1e-2), method, schedule, scope=scope, prunable=prunable)
    state = tx.init(params)
    assert (state.layout is not None) == sharded, state.layout

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(2)
    for _ in range(steps):
        grads = {n: (rng.integers(-5, 5, size=s) / 4).astype(np.float32) for n, s in SHAPES.items()}
        grads = _shard(grads) if sharded else grads
        params, state = jax.block_until_ready(step(params, state, grads))
    return {n: x for n, x in fj.masks(state).items() if x is not None}, params


def wrap() -> None:
    for method, scope in ((F.FGGP(0.5), "global"), (F.Random(1), "global"), (F.GlobalMP(2), "layerwise")):
        masks, params = _train(method, scope, sharded=True)
        expected, _ = _train(method, scope, sharded=False)
        assert_same_masks(masks, {n: np.asarray(x) for n, x in expected.items()})
        _same_sharding(masks, {n: params[n] for n in masks})
        assert all(np.all(np.asarray(params[n])[~np.asarray(masks[n])] == 0.0) for n in masks)
        print(f"wrap {method} {scope}: masks == unsharded, sharding kept: ok")


def _largest(hlo: str) -> int:
    return max([n for op, n, _ in collectives(hlo) if op in BIG], default=0)


def hlo() -> None:
    weights, grads, masks = _problem()
    w, g, m = _shard(weights), _shard(grads), _shard(masks)
    names, method = list(w), F.FGGP(0.5)
    limit = min(int(np.prod(s)) for s in SHAPES.values()) // 4
    ks = np.array([100], np.int32)
    args = (list(w.values()), list(g.values()), list(m.values()), ks, rate_bits(0.5), np.int32(3))
    config = json.dumps(method.to_config(), sort_keys=True)
    unsharded = _compiled(config, "global", None).lower(*args).compile().as_text()
    assert _largest(unsharded) >= limit, "the check must see the gathering of the whole-array program"
    sharded = _compiled(config, "global", layout_of(names, list(w.values()))).lower(*args).compile().as_text()
    found = collectives(sharded)
    assert _largest(sharded) < limit, [c for c in found if c[0] in BIG]
    print(f"select_jit hlo: {len(found)} collectives, {sum(b for *_, b in found)} bytes, largest gather "
          f"{_largest(sharded)} < {limit} entries (unsharded program: {_largest(unsharded)}): ok")

    params = _shard(_problem(1)[0])
    schedule = F.PolynomialSchedule(0.0, 0.8, begin_step=1, end_step=4, frequency=1)
    for method in (F.FGGP(0.5), F.Random(1), F.GraNet(10)):
        tx = fj.wrap(optax.adam(1e-2), method, schedule)
        state = tx.init(params)
        text = jax.jit(tx.update).lower(g, state, params).compile().as_text()
        found = collectives(text)
        assert _largest(text) < limit, [c for c in found if c[0] in BIG]
        print(f"wrap {method} update hlo: {len(found)} collectives, largest gather {_largest(text)}: ok")


def refuse() -> None:
    weights, _, masks = _problem()
    bad = dict(_shard(weights), a=jax.device_put(weights["a"], NamedSharding(MESH, P(None, "model"))))
    tx = fj.wrap(optax.sgd(0.1), F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    for call in (lambda: tx.init(bad), lambda: fj.select(F.Magnitude(), bad, None, _shard(masks), 10)):
        try:
            call()
        except F.ConfigError as error:
            assert "['a']" in str(error) or "'a'" in str(error) or "of a" in str(error), error
            assert "model" in str(error) and "dim 0" in str(error), error
        else:
            raise AssertionError("a leaf sharded along dim 1 must be refused")
    other = Mesh(np.array(jax.devices()[:4]), ("x",))
    mixed = dict(_shard(weights), d=jax.device_put(weights["d"], NamedSharding(other, P("x"))))
    try:
        fj.select(F.Magnitude(), mixed, None, _shard(masks), 10)
    except F.ConfigError as error:
        assert "another mesh" in str(error), error
    else:
        raise AssertionError("leaves on two meshes must be refused")
    print("refuse dim-1 sharding and mixed meshes with ConfigError: ok")


if __name__ == "__main__":
    {"select": select, "wrap": wrap, "hlo": hlo, "refuse": refuse}[sys.argv[1]]()
