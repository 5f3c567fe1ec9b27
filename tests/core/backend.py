"""The reference backend: NumPy arrays, fggp_core.select itself."""

from __future__ import annotations

import numpy as np

import fggp_core

FRAMEWORK = "numpy"
DTYPES = ("float16", "bfloat16", "float32", "float64")


def devices() -> list[str]:
    return ["cpu"]


def to_backend(x: np.ndarray, device: str) -> np.ndarray:
    return np.array(x, copy=True)


def to_numpy(x: np.ndarray) -> np.ndarray:
    return np.asarray(x)


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    return fggp_core.select(method, weights, grads, masks, k, scope=scope, step=step)


def backend():
    return fggp_core.NUMPY
