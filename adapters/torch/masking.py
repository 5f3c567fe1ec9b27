"""Zeroing pruned entries of weights, gradients and optimizer state, every step, cheaply.

On CUDA (and other accelerators) ``masked_fill_`` is used directly. On CPU a bool-masked
fill is a slow scalar loop, so pruned entries are zeroed by multiplying with a 0/1 mask of the
tensor's dtype (vectorised, ~10x faster); since ``NaN * 0`` stays NaN, a non-finite sum after
the multiplication falls back to the exact ``masked_fill_``. Either way pruned entries end
up exactly zero (+0.0 from ``masked_fill_``; from the multiplication, the sign of the value it
replaced, which is +0.0 for weights the standard optimizers keep at 0).
"""

from __future__ import annotations

import math

import torch

__all__ = ["PrunedEntries"]


class PrunedEntries:
    """The pruned entries of each prunable tensor that has some: ``~mask``, and on CPU a 0/1 multiplier.

    ``masks``: name -> bool mask (True = kept) on the tensor's device; ``dtypes``: name -> the
    parameter's dtype (for the multiplier). Tensors without pruned entries are left out.
    """

    def __init__(self, masks: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype]) -> None:
        self.pruned = {n: ~m for n, m in masks.items() if not bool(m.all())}
        self.keep = {n: masks[n].to(dtypes[n]) for n, p in self.pruned.items() if p.device.type == "cpu"}

    def __iter__(self):
        return iter(self.pruned)

    def zero(self, name: str, x: torch.Tensor) -> None:
        """Set the pruned entries of ``x`` (the tensor, its gradient, or a state tensor of its shape) to 0."""
        keep = self.keep.get(name)
        if keep is None or x.device != keep.device:
            x.masked_fill_(self.pruned[name].to(x.device), 0)
            return
        x.mul_(keep)
        if not math.isfinite(x.sum()):
            x.masked_fill_(self.pruned[name], 0)

    def zero_exact(self, name: str, x: torch.Tensor) -> None:
        """Set the pruned entries of ``x`` to +0.0 exactly (used at events, where values were nonzero)."""
        x.masked_fill_(self.pruned[name].to(x.device), 0)
