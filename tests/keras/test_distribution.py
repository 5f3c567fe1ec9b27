"""``PruningCallback`` under ``keras.distribution`` (DataParallel, ModelParallel with a LayoutMap)
on the JAX backend, 8 simulated CPU devices: the masks equal the one-device run's. A fresh
process (XLA_FLAGS must be set before JAX starts; see distribution_run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution runs on the JAX backend only (KERAS_BACKEND=jax)"
)
def test_callback_under_data_and_model_parallel_distribution() -> None:
    env = {
        **os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    run = subprocess.run(
        [sys.executable, "-m", "tests.keras.distribution_run"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert "DataParallel: masks == one device" in run.stdout, run.stdout
    assert "ModelParallel: masks == one device" in run.stdout, run.stdout
