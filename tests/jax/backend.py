"""The JAX backend for the cross-backend harness: jax arrays, eager ``fggp.jax.select``.

Without ``jax_enable_x64`` JAX holds float64 as float32; the harness compares with the core
on the values held (``to_numpy``). ``backend_jit.py`` is the same with ``select_jit``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FRAMEWORK = "jax"
DTYPES = ("float16", "bfloat16", "float32", "float64")


def backend() -> Any:
    import fggp.jax

    return fggp.jax.JAX


def devices() -> list[str]:
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"] if jax.default_backend() == "gpu" else []
    return ["cpu"] + (["gpu"] if gpus else [])


def _device(device: str) -> Any:
    import jax

    return jax.devices("cpu")[0] if device == "cpu" else jax.devices("gpu")[0]


MAP_LIMIT = 30_000  # memory maps of this process; the kernel's default vm.max_map_count is 65,530
_calls = 0


def bound_executables() -> None:
    """Drop JAX's caches when this process holds more than ``MAP_LIMIT`` memory maps (checked every
    25 calls). JAX on CPU keeps every compiled executable, about 150 maps each, so a property run
    of thousands of shapes (``FGGP_HYPOTHESIS_PROFILE=thorough``) reached the kernel's limit and
    aborted inside an XLA compile."""
    global _calls
    _calls += 1
    if _calls % 25:
        return
    try:
        with open("/proc/self/maps") as maps:
            count = sum(1 for _ in maps)
    except OSError:  # no procfs (macOS): nothing to bound by
        return
    if count > MAP_LIMIT:
        import jax

        jax.clear_caches()


def to_backend(x: np.ndarray, device: str) -> Any:
    import jax

    bound_executables()  # every array of a drawn case comes through here, eager and jitted
    return jax.device_put(np.asarray(x), _device(device))


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    import fggp.jax

    return fggp.jax.select(method, weights, grads, masks, k, scope=scope, step=step)
