"""The example Array API backend (``examples/array_api_backend.py``) in the cross-backend harness,
over ``array_api_strict``: proof that a new backend is one file plus this entry."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

FRAMEWORK = "array_api_strict"
EXTRA = "test"
LABEL = "array-api"
DTYPES = ("float32", "float64")  # the Array API has neither float16 nor bfloat16
_FILE = Path(__file__).resolve().parents[2] / "examples" / "array_api_backend.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("array_api_backend", _FILE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def available() -> str | None:
    """None when usable, else why not (the example lives in the source tree, not in the wheel)."""
    return None if _FILE.exists() else f"{_FILE} is not here (tests run outside the source tree)"


def backend() -> Any:
    import array_api_strict

    return _module().ArrayAPIBackend(array_api_strict)


def devices() -> list[str]:
    return ["cpu"]


def to_backend(x: np.ndarray, device: str) -> Any:
    import array_api_strict

    return array_api_strict.from_dlpack(np.ascontiguousarray(x).copy())


def to_numpy(x: Any) -> np.ndarray:
    return np.from_dlpack(x)


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    import fggp_core

    return fggp_core.select(method, weights, grads, masks, k, scope=scope, step=step, backend=backend())
