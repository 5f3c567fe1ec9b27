"""Sparse files for PyTorch: a model's (or a state dict's) tensors in the fggp sparse format.

The format and its checks are the core's (``fggp_core.sparse_file``, docs/sparse-format.md);
this module converts torch tensors to and from NumPy exactly (bfloat16 through its bits) and
loads into a model without ever leaving it half-written: every tensor of the file is checked
against the model and built first, and only then copied into the model's tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from fggp_core.errors import ConfigError, InputMismatchError
from fggp_core.sparse_file import PathLike, TensorRecord
from fggp_core.sparse_file import load_sparse as _load
from fggp_core.sparse_file import save_sparse as _save

__all__ = ["load_sparse", "read_sparse", "save_sparse"]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU copy of ``tensor`` as NumPy with the same bits (bfloat16 -> ``ml_dtypes.bfloat16``)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """A CPU torch tensor with the bits of ``array`` (the inverse of ``to_numpy``)."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def save_sparse(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: PathLike,
    *,
    sparse: Any = None,
    metadata: Mapping[str, str] | None = None,
    compress: bool = True,
) -> list[TensorRecord]:
    """Write the ``state_dict`` of ``model`` (or a state dict) to ``path`` in the fggp sparse format.

    ``sparse``: None (default) stores sparse every floating tensor that is smaller so (its +0.0
    entries become the mask; any model with zeros); a list of names; a mapping name -> bool mask
    (tensors or arrays); or a ``TorchPruner``, whose masks are stored (its pruned entries must be
    +0.0, as after ``finalize``). ``metadata``: extra str -> str header pairs. Atomic; returns one
    ``TensorRecord`` per tensor. ``compress``: as in ``fggp.save_sparse``. Tensors on any device;
    nothing of the model changes.
    """
    from .pruner import TorchPruner

    state = model.state_dict() if isinstance(model, nn.Module) else model
    if not isinstance(state, Mapping) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ConfigError("model", type(model).__name__, "must be a torch.nn.Module or a state dict of tensors")
    if isinstance(sparse, TorchPruner):
        sparse = sparse.masks
    if isinstance(sparse, Mapping):
        sparse = {n: to_numpy(m) if isinstance(m, torch.Tensor) else np.asarray(m) for n, m in sparse.items()}
    return _save({n: to_numpy(t) for n, t in state.items()}, path, sparse=sparse, metadata=metadata, compress=compress)


def read_sparse(path: PathLike) -> dict[str, torch.Tensor]:
    """An fggp sparse file as a state dict of CPU tensors (bit-exact, validated first)."""
    return {name: from_numpy(array) for name, array in _load(path).items()}


def load_sparse(model: nn.Module, path: PathLike, *, strict: bool = True) -> nn.Module:
    """Load an fggp sparse file into ``model`` (same architecture), bitwise-identical; returns ``model``.

    The file is validated and every tensor built and checked against the model (names, shapes,
    dtypes) before any is copied, so a refused file changes nothing. ``strict`` (default True):
    the file's names must equal the model's ``state_dict`` names; False loads the names both
    have. Tensors are copied onto each model tensor's device.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", type(model).__name__, "must be a torch.nn.Module")
    loaded = read_sparse(path)
    target = model.state_dict()  # detached tensors sharing the parameters' and buffers' storage
    missing, unexpected = sorted(set(target) - set(loaded)), sorted(set(loaded) - set(target))
    if strict and (missing or unexpected):
        raise InputMismatchError(
            f"{path}: the file does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]} "
            "(load with strict=False to load the names both have)"
        )
    ready = {}
    for name in [n for n in target if n in loaded]:
        new, old = loaded[name], target[name]
        if new.shape != old.shape or new.dtype != old.dtype:
            raise InputMismatchError(f"{path}: tensor {name!r} is {new.dtype}{list(new.shape)} in the file and "
                                     f"{old.dtype}{list(old.shape)} in the model")  # fmt: skip
        ready[name] = new.to(old.device)
    with torch.no_grad():
        for name, new in ready.items():
            target[name].copy_(new)
    return model
