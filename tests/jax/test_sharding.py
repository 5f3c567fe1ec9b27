"""Sharded arrays on 8 simulated CPU devices: selection equals the unsharded one, and a jitted
data-parallel run reaches the exact target. A subprocess, since XLA_FLAGS must be set before
JAX starts (see sharded_run.py; it blocks on each step's result, which this 2-core machine needs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
ROOT = Path(__file__).resolve().parents[2]


def test_sharded_selection_and_data_parallel_training_on_8_cpu_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.jax.sharded_run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert "sharded selection == unsharded: ok" in run.stdout
    assert "data-parallel run" in run.stdout and "pruned params zero: ok" in run.stdout
