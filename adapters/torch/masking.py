"""Zeroing pruned entries of weights, gradients and optimizer state, every step, cheaply and exactly.

A pruned entry is zeroed by a bitwise AND of the tensor's bits with an integer mask of the same
element size (all ones where kept, 0 where pruned): one vectorised pass, as fast as a multiply,
and exact where a multiply is not (``NaN * 0`` is NaN, ``-x * 0`` is -0.0): every pruned entry
becomes +0.0 whatever it held. (On CPU a bool-masked ``masked_fill_`` is a ~10x slower scalar
loop.) Tensors of other dtypes (and other devices than the mask's) fall back to ``masked_fill_``.

Between events only gradients must be masked for optimizers that provably keep a pruned weight
at +0.0 when its gradient and state are 0 (``keeps_zeros``: SGD, Adam, AdamW with finite,
in-range hyper-parameters); every other optimizer also has its weights masked after each step.

torch's CPU ``sqrt`` of an exact float32 zero is ~6x slower than of any other value (torch 2.13:
4.6 ms against 0.72 ms per 2^20 entries, 1e-30 as fast as 1.0), so a non-fused Adam/AdamW step on
a 90 % pruned model, whose pruned second moments are 0, cost ~2x a dense one. ``lift`` sets the
pruned entries of such a second moment to 1.0 for the duration of the step only (``lift_targets``
says which): with m = 0 and g = 0 the update of an entry is +0 for any v > 0, as it is for v = 0.
The step's results are the same bits; the moment is zeroed again right after the step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["LIFT_MIN_PRUNED", "PrunedEntries", "and_mask", "keeps_zeros", "lift", "lift_targets"]

_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_ONE_BITS = 0x3F800000  # float32 1.0 as int32
# the pruned share of a tensor from which lifting its second moment pays: lifting and zeroing it again
# cost four integer passes over it (~1.5 ns per entry here), a zero in the step ~5.5 ns per pruned entry
LIFT_MIN_PRUNED = 0.25


def and_mask(pruned: torch.Tensor, itemsize: int) -> torch.Tensor | None:
    """The integer AND mask of a bool ``pruned`` mask for elements of ``itemsize`` bytes: all bits
    set (-1) where kept, 0 where pruned (``pruned - 1`` in int8, then sign-extended); None if no
    integer type has that size."""
    bits = _BITS.get(itemsize)
    return None if bits is None else pruned.view(torch.int8).sub(1).to(bits)


class PrunedEntries:
    """The pruned entries of each prunable tensor that has some: ``~mask`` and integer AND masks.

    ``masks``: name -> bool mask (True = kept) on the tensor's device; ``dtypes``: name -> the
    parameter's dtype (its AND mask is made up front; others, e.g. float32 Adam moments of a
    bfloat16 weight, on first use). Tensors without pruned entries are left out.
    """

    def __init__(self, masks: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype]) -> None:
        # (a count: torch's bool .all() is a slow scalar loop on CPU)
        kept = {n: int(torch.count_nonzero(m)) for n, m in masks.items()}
        self.pruned = {n: ~m for n, m in masks.items() if kept[n] < m.numel()}
        self.fraction = {n: 1.0 - kept[n] / masks[n].numel() for n in self.pruned}  # pruned share per tensor
        self._and: dict[tuple[str, int, torch.device], torch.Tensor] = {}
        for name, pruned in self.pruned.items():
            self._bits(name, dtypes[name].itemsize, pruned.device)

    def __iter__(self):
        return iter(self.pruned)

    def _bits(self, name: str, itemsize: int, device: torch.device) -> torch.Tensor:
        key = (name, itemsize, device)
        bits = self._and.get(key)
        if bits is None:
            bits = self._and[key] = and_mask(self.pruned[name].to(device), itemsize)
        return bits

    def exact(self, name: str, x: torch.Tensor) -> None:
        """Set the pruned entries of ``x`` (same shape as the mask) to +0.0 exactly, NaN and -0.0 included."""
        if x.dtype.is_floating_point and x.dtype.itemsize in _BITS and not x.is_complex():
            bits = _BITS[x.dtype.itemsize]
            x.view(bits).bitwise_and_(self._bits(name, x.dtype.itemsize, x.device))
        else:
            x.masked_fill_(self.pruned[name].to(x.device), 0)

    def lift(self, name: str, v: torch.Tensor) -> None:
        """Set the pruned entries of float32 ``v`` to exactly 1.0 (see ``lift``)."""
        lift(v, self._bits(name, 4, v.device))


def lift(v: torch.Tensor, bits: torch.Tensor) -> None:
    """Set the entries of float32 ``v`` where the int32 AND mask ``bits`` is 0 (pruned) to exactly 1.0,
    whatever they held; entries where it is -1 (kept) keep their bits. Three integer passes, no buffer."""
    ints = v.view(torch.int32)
    ints.bitwise_and_(bits)  # pruned: 0
    ints.add_(bits, alpha=_ONE_BITS).add_(_ONE_BITS)  # + ONE * (bits + 1): 0 where kept, ONE where pruned


def lift_targets(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The parameters whose pruned second moments ``lift`` may raise for this step: those of a
    ``torch.optim.Adam``/``AdamW`` (exact classes, ``keeps_zeros``) in non-fused, non-differentiable
    groups whose ``exp_avg_sq`` already exists as a float32 CPU tensor of the parameter's shape.
    (Fused kernels and CUDA have no slow path for zeros; bfloat16's sqrt has none either.)"""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) or not keeps_zeros(optimizer):
        return []
    targets = []
    for group in optimizer.param_groups:
        if group.get("fused") or group.get("differentiable"):
            continue
        for param in group["params"]:
            v = optimizer.state.get(param, {}).get("exp_avg_sq")
            if isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device.type == "cpu":
                if v.shape == param.shape:
                    targets.append(param)
    return targets


def _finite(*values: Any) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError, RuntimeError):  # e.g. a multi-element tensor: not a case we can vouch for
        return False


def _group_keeps_zeros(kind: type, group: dict[str, Any]) -> bool:
    """Whether one param group's update maps (weight +0.0, gradient 0, state 0) to weight +0.0 and state 0.

    SGD: ``d = g + wd*w`` is ±0, the momentum buffer ``mu*b + (1-dampening)*d`` is ±0 (nesterov
    adds ``mu*b``), and ``w - lr*d`` is +0.0 (+0 plus ±0 is +0) for any finite lr, momentum, dampening
    and wd. Adam/AdamW: both moments stay 0 (amsgrad's max too), ``m / (sqrt(v) / c + eps)`` is 0
    only if ``eps > 0`` (else 0/0 = NaN), bias corrections need betas in [0, 1); decoupled decay
    multiplies the weight by ``1 - lr*wd``, which must not be negative (else -0.0).
    """
    lr, wd = group.get("lr", 0.0), group.get("weight_decay", 0.0)
    if not _finite(lr, wd):
        return False
    if kind is torch.optim.SGD:
        return _finite(group.get("momentum", 0.0), group.get("dampening", 0.0))
    betas = group.get("betas", (0.0, 0.0))
    if not (_finite(*betas, group.get("eps", 0.0)) and len(betas) == 2 and float(group.get("eps", 0.0)) > 0):
        return False
    if not all(0.0 <= float(b) < 1.0 for b in betas):
        return False
    decoupled = kind is torch.optim.AdamW or bool(group.get("decoupled_weight_decay", False))
    return not decoupled or float(lr) * float(wd) <= 1.0


def keeps_zeros(optimizer: torch.optim.Optimizer) -> bool:
    """True when ``optimizer.step()`` provably leaves pruned weights at +0.0 and their state at 0,
    given gradients that are exactly 0 there (masked before the step) and state zeroed at events.

    Only the exact classes ``torch.optim.SGD``, ``Adam`` and ``AdamW`` (any of their foreach,
    fused, maximize, nesterov, amsgrad, weight-decay settings) with finite hyper-parameters in
    range; subclasses and other optimizers may move a zero and get their weights masked.
    Checked at every step (cheap: a few numbers per param group), since schedulers change ``lr``.
    """
    kind = type(optimizer)
    if kind not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        return False
    return all(_group_keeps_zeros(kind, group) for group in optimizer.param_groups)
