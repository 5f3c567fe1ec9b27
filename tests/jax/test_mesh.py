"""Params sharded over a 4 x 2 mesh of 8 simulated CPU devices: each device selects on its own
blocks (``shard_map``), the masks are bit-identical to the unsharded run and keep the params'
sharding, the compiled event gathers nothing leaf-sized, and unsupported layouts are refused.
Each part runs in a fresh process (XLA_FLAGS must be set before JAX starts; see mesh_run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "select": ["select FGGP(rate=0.5) global: ok", "select Random(seed=2) global: ok", "layerwise: ok"],
    "wrap": ["wrap FGGP(rate=0.5) global: masks == unsharded", "wrap GlobalMP(min_keep=2) layerwise"],
    "hlo": ["select_jit hlo:", "wrap GraNet"],
    "refuse": ["refuse dim-1 sharding and mixed meshes with ConfigError: ok"],
}


@pytest.mark.parametrize("part", sorted(EXPECTED))
def test_sharded_over_a_mesh(part: str) -> None:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.jax.mesh_run", part], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    for line in EXPECTED[part]:
        assert line in run.stdout, run.stdout
