"""The PyTorch backend of the cross-backend harness: torch tensors, ``fggp.torch.select``, ``TORCH``."""

from __future__ import annotations

from typing import Any

import numpy as np

FRAMEWORK = "torch"
DTYPES = ("float16", "bfloat16", "float32", "float64")


def devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def to_backend(x: np.ndarray, device: str) -> Any:
    """A torch tensor on ``device`` holding exactly ``x`` (bool, f16, ml_dtypes bf16, f32, f64)."""
    import torch

    x = np.ascontiguousarray(x)
    if x.dtype.name == "bfloat16":  # ml_dtypes.bfloat16: same bits as torch.bfloat16
        return torch.from_numpy(x.view(np.int16).copy()).view(torch.bfloat16).to(device)
    return torch.from_numpy(x.copy()).to(device)


def to_numpy(x: Any) -> np.ndarray:
    """The host copy of a tensor; bfloat16 comes back as an ml_dtypes.bfloat16 array."""
    from fggp.torch import TORCH

    return TORCH.to_host(x)


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    from fggp.torch import select as torch_select

    return torch_select(method, weights, grads, masks, k, scope=scope, step=step)


def backend():
    """The ``fggp_core.Backend`` object under test: ``fggp.torch.TORCH``."""
    from fggp.torch import TORCH

    return TORCH
