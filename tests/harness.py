"""The cross-backend harness: one list of backends, each with its devices, so the same
properties run on every backend and assert masks identical to NumPy's.

A backend is a module listed in ``BACKENDS`` (``tests/X/backend.py``) that provides
``FRAMEWORK`` (the module that must import), ``DTYPES``, ``devices()``, ``to_backend(array,
device)``, ``to_numpy(x)``, ``select(method, weights, grads, masks, k, *, scope, step)`` and
``backend()`` (its ``fggp_core.Backend`` object, for the primitive contract tests; absent for
a variant such as jitted JAX that reuses another's primitives). A backend whose framework is
not installed is skipped with that reason; CUDA/GPU devices join when present. Adding a
backend is one line here.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

import numpy as np
import pytest

BACKENDS = {
    "core": "tests.core.backend",
    "torch": "tests.torch.backend",
    "jax": "tests.jax.backend",
    "jax-jit": "tests.jax.backend_jit",  # the traced path fggp.jax.wrap runs
    "keras": "tests.keras.backend",
    "array-api": "tests.array_api.backend",  # the one-file example backend
}


def load(name: str) -> ModuleType:
    return importlib.import_module(BACKENDS[name])


def backend_params(names: tuple[str, ...] = tuple(BACKENDS), primitives: bool = False) -> list[Any]:
    """``pytest.param((backend_module, device))`` for every backend and device, skips explained.

    ``primitives``: only backends with a ``backend()`` object of their own."""
    params = []
    for name in names:
        try:
            module = load(name)
        except ModuleNotFoundError as error:
            if not BACKENDS[name].startswith(error.name or "-"):
                raise
            reason = f"the {name} backend has no module {BACKENDS[name]}"
            params.append(pytest.param((None, "cpu"), id=f"{name}-cpu", marks=pytest.mark.skip(reason=reason)))
            continue
        if importlib.util.find_spec(module.FRAMEWORK) is None:
            extra = getattr(module, "EXTRA", name)
            reason = f"{module.FRAMEWORK} is not installed (pip install 'fggp[{extra}]')"
            params.append(pytest.param((module, "cpu"), id=f"{name}-cpu", marks=pytest.mark.skip(reason=reason)))
            continue
        why_not = getattr(module, "available", lambda: None)()
        if why_not is not None:
            params.append(pytest.param((module, "cpu"), id=f"{name}-cpu", marks=pytest.mark.skip(reason=why_not)))
            continue
        if primitives and not hasattr(module, "backend"):
            continue
        label = getattr(module, "LABEL", name)
        params += [pytest.param((module, device), id=f"{label}-{device}") for device in module.devices()]
    return params


def on_backend(module: ModuleType, device: str, arrays: dict[str, np.ndarray] | None) -> Any:
    if arrays is None:
        return None
    return {n: module.to_backend(a, device) for n, a in arrays.items()}


def held_values(module: ModuleType, arrays: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    """The values a backend actually holds, back on the host (e.g. JAX turns float64 into float32)."""
    if arrays is None:
        return None
    return {n: np.asarray(module.to_numpy(a)) for n, a in arrays.items()}


def assert_same_masks(actual: dict[str, Any], expected: dict[str, np.ndarray], to_numpy=np.asarray) -> None:
    """Same names in the same order, boolean, same shapes, every entry equal."""
    assert list(actual) == list(expected), (list(actual), list(expected))
    for name in expected:
        got = np.asarray(to_numpy(actual[name]))
        assert got.dtype == np.bool_, (name, got.dtype)
        assert got.shape == expected[name].shape, (name, got.shape, expected[name].shape)
        mismatch = np.flatnonzero(got.reshape(-1) != expected[name].reshape(-1))
        assert mismatch.size == 0, f"{name}: {mismatch.size} entries differ, first at {mismatch[:5]}"
