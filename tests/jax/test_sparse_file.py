"""fggp.jax.save_sparse / load_sparse: params pytrees (Linen dicts, NNX state) round trip bit-exact with the
caller's structure, dtypes and shardings; the masks of an optax state are stored; mismatches are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fggp
import fggp.jax as fj
from fggp_core.errors import InputMismatchError

ROOT = Path(__file__).resolve().parents[2]


def _bits(tree) -> list[bytes]:
    return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


def _linen_like(seed: int, dtype=jnp.float32) -> dict:
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    kernel = jax.random.normal(keys[0], (32, 16), dtype)
    kernel = jnp.where(jax.random.uniform(keys[1], (32, 16)) < 0.9, jnp.zeros((), dtype), kernel)
    kernel = kernel.at[0, 0].set(-0.0).at[0, 1].set(jnp.nan)
    return {"params": {"Dense_0": {"kernel": kernel, "bias": jnp.ones(16, dtype)}}, "step": jnp.array(3)}


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_linen_params_round_trip_with_structure_dtype_and_sharding(tmp_path, dtype):
    params = _linen_like(0, dtype)
    records = fj.save_sparse(params, tmp_path / "p.safetensors")
    assert {r.name: r.kind for r in records}["['params']['Dense_0']['kernel']"] == "sparse"
    like = _linen_like(1, dtype)
    loaded = fj.load_sparse(tmp_path / "p.safetensors", like=like)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    assert _bits(loaded) == _bits(params)
    for new, old in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(like)):
        assert new.dtype == old.dtype and new.sharding == old.sharding
    flat = fj.load_sparse(tmp_path / "p.safetensors")
    assert list(flat) == fj.leaf_names(params)


def test_nnx_state_round_trips_into_a_fresh_module(tmp_path):
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(24, 8, rngs=nnx.Rngs(0))
    model.kernel[...] = model.kernel[...].at[:20].set(0.0)
    fj.save_sparse(nnx.state(model), tmp_path / "m.safetensors")
    fresh = nnx.Linear(24, 8, rngs=nnx.Rngs(1))
    nnx.update(fresh, fj.load_sparse(tmp_path / "m.safetensors", like=nnx.state(fresh)))
    assert _bits(nnx.state(fresh)) == _bits(nnx.state(model))


def test_the_masks_of_an_optax_state_are_stored(tmp_path):
    params = _linen_like(0)
    kept = (params["params"]["Dense_0"]["kernel"] != 0).at[0, 0].set(True).at[5, 5].set(True)  # -0.0, a kept zero
    masks = {"params": {"Dense_0": {"kernel": kept, "bias": None}}, "step": None}
    fj.save_sparse(params, tmp_path / "p.safetensors", sparse=masks)
    _, stored = fggp.load_sparse(tmp_path / "p.safetensors", with_masks=True)
    np.testing.assert_array_equal(stored["['params']['Dense_0']['kernel']"], kept)
    assert list(stored) == ["['params']['Dense_0']['kernel']"]


def test_a_mismatching_like_is_refused(tmp_path):
    fj.save_sparse(_linen_like(0), tmp_path / "p.safetensors")
    with pytest.raises(InputMismatchError, match="Dense_0"):
        fj.load_sparse(tmp_path / "p.safetensors", like=_linen_like(0, jnp.float16))
    with pytest.raises(InputMismatchError, match="missing"):
        fj.load_sparse(tmp_path / "p.safetensors", like={"params": _linen_like(0)["params"]})


SHARDED = """
import jax, numpy as np, fggp.jax as fj
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices()), ("d",))
w = np.zeros((8, 6), np.float32); w[::3] = 1.5
params = {"w": jax.device_put(w, NamedSharding(mesh, P("d", None)))}
fj.save_sparse(params, "%s")
like = {"w": jax.device_put(np.ones((8, 6), np.float32), NamedSharding(mesh, P("d", None)))}
out = fj.load_sparse("%s", like=like)
assert out["w"].sharding == like["w"].sharding and np.array_equal(np.asarray(out["w"]), w)
print("sharded ok", len(out["w"].sharding.device_set))
"""


def test_sharded_params_round_trip_keeping_the_sharding(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    path = tmp_path / "s.safetensors"
    run = subprocess.run([sys.executable, "-c", SHARDED % (path, path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sharded ok 2" in run.stdout
