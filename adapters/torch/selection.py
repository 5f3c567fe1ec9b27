"""``fggp.torch.select``: the core's one selection algorithm, run on torch tensors."""

from __future__ import annotations

from collections.abc import Mapping

import torch

import fggp_core
from fggp_core.errors import InputMismatchError
from fggp_core.methods import Method

from .backend import TORCH

__all__ = ["select"]


def select(
    method: Method,
    weights: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor] | None,
    masks: Mapping[str, torch.Tensor],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
) -> dict[str, torch.Tensor]:
    """``fggp_core.select(..., backend=TORCH)``: the core's selection, run with torch ops on the tensors' devices.

    ``weights``/``grads``: name -> floating tensor (float16, bfloat16, float32 or float64);
    ``masks``: name -> bool tensor (True = kept), all of the same shapes. Returns new bool
    masks, each on its weight's device, with exactly ``k`` more entries pruned, identical to
    ``fggp_core.select`` on the same values. Inputs are never modified.
    """
    for argument, tensors in (("weights", weights), ("grads", grads), ("masks", masks)):
        for name, value in (tensors or {}).items():
            if not isinstance(value, torch.Tensor):
                raise InputMismatchError(
                    f"{argument}[{name!r}] is a {type(value).__name__}; fggp.torch.select takes torch tensors"
                )
    return fggp_core.select(method, weights, grads, masks, k, scope=scope, step=step, backend=TORCH)
