"""JAX under ``jax.jit`` for the cross-backend harness: ``fggp.jax.select_jit``, the compiled
program ``fggp.jax.wrap``'s event branch runs (``run_traced``). Arrays, devices and dtypes
are those of ``backend.py``; the primitives are the same ``JAX`` backend, tested there."""

from __future__ import annotations

from tests.jax.backend import DTYPES, FRAMEWORK, devices, to_backend, to_numpy

__all__ = ["DTYPES", "FRAMEWORK", "LABEL", "devices", "to_backend", "to_numpy", "select"]

LABEL = "jax-jit"


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    import fggp.jax

    return fggp.jax.select_jit(method, weights, grads, masks, k, scope=scope, step=step)
