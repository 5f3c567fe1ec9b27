"""The selection primitives on torch tensors, on the tensors' own device (CPU or CUDA).

``fggp_core.select`` is written once against the ``Executor`` protocol; this class implements
it with torch ops, so a selection never copies a full tensor to the host. The only host
values are scalars (counts, the k-th value's position) and, for ``Random``, the seeded
uniform draw that SPEC says is made on the host.

Scores are built in the score dtype (``fggp_core.score_dtype``: float32 for float16,
bfloat16 and float32 tensors, float64 when a group holds a float64 tensor), which makes the
upcast exact; the Taylor product ``|w * g|`` is rounded once, in that dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fggp_core.executor import split_flat

__all__ = ["TorchExecutor", "TORCH"]

_SCORE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_RADIX = {torch.float32: (torch.int32, (16, 0)), torch.float64: (torch.int64, (48, 32, 16, 0))}
_BFLOAT16 = "bfloat16"


def _device(like: Any) -> torch.device:
    return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")


class TorchExecutor:
    """``fggp_core.Executor`` over torch tensors.

    Flat arrays live on the device of the first tensor of a group; tensors on other devices
    are copied device-to-device into the flat score (never through the host).
    ``block`` is the least number of entries per block when scanning for the r-th True entry,
    so ``first_true`` needs one int64 array of one block, not of the whole mask.
    """

    name = "torch"

    def __init__(self, block: int = 1 << 16) -> None:
        self.block = int(block)

    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: torch.Tensor) -> str:
        return str(x.dtype).removeprefix("torch.")

    def to_host(self, x: torch.Tensor) -> np.ndarray:
        x = x.detach()
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16 of its own; ml_dtypes does
            import ml_dtypes

            return x.cpu().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return x.cpu().numpy()

    def from_host(self, x: np.ndarray, like: Any) -> torch.Tensor:
        x = np.asarray(x)
        if x.dtype.name == _BFLOAT16:
            return torch.from_numpy(np.ascontiguousarray(x).view(np.int16)).view(torch.bfloat16).to(_device(like))
        return torch.from_numpy(np.ascontiguousarray(x)).to(_device(like))

    def flat_score(
        self, tensors: Sequence[torch.Tensor], others: Sequence[torch.Tensor] | None, dtype: str
    ) -> torch.Tensor:
        score_dtype = _SCORE_DTYPES[dtype]
        sizes = [t.numel() for t in tensors]
        device = tensors[0].device if tensors else torch.device("cpu")
        out = torch.empty(sum(sizes), dtype=score_dtype, device=device)
        start = 0
        with torch.no_grad():
            for i, (t, n) in enumerate(zip(tensors, sizes)):
                part = out[start : start + n]
                part.copy_(t.detach().reshape(-1))  # exact upcast (bfloat16/float16 -> float32)
                if others is not None:
                    part.mul_(others[i].detach().reshape(-1).to(device=device, dtype=score_dtype))
                part.abs_()  # also maps -0.0 to +0.0
                start += n
        return out

    def flat_mask(self, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        device = masks[0].device
        return torch.cat([m.detach().reshape(-1).to(device) for m in masks])

    def split(self, flat: torch.Tensor, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        return split_flat(flat, shapes)

    def exclude(self, score: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
        """+inf outside ``among``, in integer arithmetic on the score's bits (a bool-masked fill is
        a slow scalar loop on CPU): ``bits = (bits - INF) * among + INF``, exact in two's complement."""
        int_dtype, _ = _RADIX[score.dtype]
        bits = score.view(int_dtype)
        inf_bits = torch.tensor(math.inf, dtype=score.dtype).view(int_dtype).item()
        bits.sub_(inf_bits).mul_(among.to(int_dtype)).add_(inf_bits)
        return score

    def kth_value(self, x: torch.Tensor, k: int) -> Any:
        """Exact k-th smallest score by radix selection on the score's bits, 16 bits per pass.

        Scores are >= 0 (absolute values, uniform draws; +inf marks non-candidates), and for
        non-negative IEEE floats the integer bit patterns are ordered like the values. Each pass
        counts the candidates per 16-bit digit (``bincount``), picks the digit holding the k-th,
        and keeps only the candidates with that digit. No sort, no copy to the host.
        """
        if k == 0:
            return -math.inf
        int_dtype, shifts = _RADIX[x.dtype]
        bits = x.view(int_dtype)
        prefix, remaining = 0, int(k)
        for shift in shifts:
            digits = (bits >> shift) & 0xFFFF
            running = torch.cumsum(torch.bincount(digits, minlength=1 << 16), dim=0)
            digit = int(torch.searchsorted(running, remaining))  # first digit reaching the k-th
            remaining -= int(running[digit - 1]) if digit else 0
            prefix |= digit << shift
            if shift:
                bits = bits[digits == digit]
        width = torch.iinfo(int_dtype).bits
        if prefix >= 1 << (width - 1):  # only a NaN with its sign bit set gets here; keep the int in range
            prefix -= 1 << width
        return torch.tensor(prefix, dtype=int_dtype, device=x.device).view(x.dtype)

    def first_true(self, mask: torch.Tensor, r: int) -> torch.Tensor:
        """Keep the first ``r`` True entries: per-block counts locate the block, a cumsum the entry.

        At most ~256 blocks of at least ``self.block`` entries; the counts stay on the device
        until one search, and the only int64 temporary is one block's running count.
        """
        r = int(r)
        if r <= 0:
            return mask.zero_()
        n = mask.numel()
        b = max(self.block, -(-n // 256))
        counts = torch.stack([torch.count_nonzero(mask[i : i + b]) for i in range(0, n, b)]) if n else None
        if counts is None:
            return mask
        seen = torch.cumsum(counts, dim=0)
        index = int(torch.searchsorted(seen, r))  # first block whose running count reaches r
        if index == seen.numel():
            return mask  # fewer than r True entries: keep them all
        before = int(seen[index - 1]) if index else 0
        local = torch.cumsum(mask[index * b : (index + 1) * b], dim=0)
        cut = index * b + int(torch.searchsorted(local, r - before)) + 1
        mask[cut:] = False
        return mask

    def count(self, mask: torch.Tensor) -> int:
        return int(torch.count_nonzero(mask))

    def nonfinite(self, score: torch.Tensor, among: torch.Tensor) -> int:
        if math.isfinite(score.sum()):  # scores are >= 0: a finite sum means every score is finite
            return 0
        return int(torch.count_nonzero(torch.logical_not(score < math.inf) & among))

    def zeros(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(like.numel(), dtype=torch.bool, device=_device(like))


TORCH = TorchExecutor()
"""The default executor instance."""
