"""``fggp.keras.select``: the core's one selection algorithm, run with ``keras.ops`` on the
tensors of the process's Keras backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

import fggp_core
from fggp_core.errors import InputMismatchError

from .backend import KERAS

__all__ = ["select"]


def select(
    method: fggp_core.Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
) -> dict[str, Any]:
    """``fggp_core.select(..., backend=KERAS)`` on tensors of the process's Keras backend.

    ``weights``/``grads``: name -> floating backend tensor (float16, bfloat16, float32 or
    float64); ``masks``: name -> bool backend tensor (True = kept), all of the same shapes.
    Returns new bool masks, each on its weight's device, with exactly ``k`` more entries
    pruned, identical to ``fggp_core.select`` on the values the backend holds. Inputs are
    never modified.
    """
    for argument, tensors in (("weights", weights), ("grads", grads), ("masks", masks)):
        for name, value in (tensors or {}).items():
            if not keras.ops.is_tensor(value):
                raise InputMismatchError(
                    f"{argument}[{name!r}] is a {type(value).__name__}; fggp.keras.select takes "
                    f"{keras.backend.backend()} tensors"
                )
    return fggp_core.select(method, weights, grads, masks, k, scope=scope, step=step, backend=KERAS)
