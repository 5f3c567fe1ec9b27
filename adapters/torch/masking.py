"""Zeroing pruned entries of weights, gradients and optimizer state, every step, cheaply.

On CUDA (and other accelerators) ``masked_fill_`` is used directly, without a host sync. On
CPU a bool-masked fill is a slow scalar loop, so between events pruned entries are zeroed by
multiplying with a 0/1 mask of the tensor's dtype (vectorised, ~10x faster). ``NaN * 0`` is
NaN, so after the weights' multiplication a non-finite sum switches to the exact
``masked_fill_`` (a NaN gradient at a pruned entry reaches the weight through any
optimizer that uses it, so checking the weights suffices). At events, and in the fallback,
pruned entries become +0.0 exactly; the multiplication keeps the +0.0 the standard
optimizers leave there.
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

    def multiply(self, name: str, x: torch.Tensor) -> None:
        """Zero the pruned entries of ``x`` (a gradient): fast, a NaN there stays NaN on CPU."""
        keep = self.keep.get(name)
        if keep is None or x.device != keep.device:
            self.exact(name, x)
        else:
            x.mul_(keep)

    def zero(self, name: str, x: torch.Tensor) -> bool:
        """Zero the pruned entries of ``x`` (a weight); True when it held NaN/inf (then exact +0.0)."""
        keep = self.keep.get(name)
        if keep is None or x.device != keep.device:
            self.exact(name, x)
            return False
        x.mul_(keep)
        if math.isfinite(x.sum()):
            return False
        self.exact(name, x)
        return True

    def exact(self, name: str, x: torch.Tensor) -> None:
        """Set the pruned entries of ``x`` to +0.0 exactly."""
        x.masked_fill_(self.pruned[name].to(x.device), 0)
