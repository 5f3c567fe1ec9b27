"""The Keras backend of the cross-backend harness: fggp.keras.select and KerasBackend on Keras tensors.

The Keras backend is the process's KERAS_BACKEND (tensorflow, jax or torch); tests/run.sh runs
these parameters once per backend. JAX holds float64 only when x64 is enabled, so DTYPES
lists float64 there only then.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

FRAMEWORK = "keras"
LABEL = f"keras[{os.environ.get('KERAS_BACKEND', 'tensorflow')}]"


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _dtypes() -> tuple[str, ...]:
    try:
        backend = _backend()
    except ImportError:  # keras missing: the harness skips this backend
        return ()
    if backend == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return ("float16", "bfloat16", "float32")
    return ("float16", "bfloat16", "float32", "float64")


DTYPES = _dtypes()


def devices() -> list[str]:
    """"cpu", plus "gpu" when the Keras backend sees one."""
    backend = _backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    elif backend == "jax":
        import jax

        gpu = any(d.platform == "gpu" for d in jax.devices())
    else:
        import torch

        gpu = torch.cuda.is_available()
    return ["cpu", "gpu"] if gpu else ["cpu"]


def to_backend(x: np.ndarray, device: str) -> Any:
    """A Keras backend tensor on ``device`` with x's dtype (bool, f16, bf16, f32, f64)."""
    import keras

    with keras.device(f"{device}:0"):
        return keras.ops.convert_to_tensor(np.array(x, copy=True), dtype=x.dtype.name)


def to_numpy(x: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    import fggp.keras

    return fggp.keras.select(method, weights, grads, masks, k, scope=scope, step=step)


def backend():
    """The primitives under test: ``fggp.keras.KERAS`` (keras.ops on the process's Keras backend)."""
    from fggp.keras import KERAS

    return KERAS
