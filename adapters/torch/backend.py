"""The selection primitives on torch tensors, on each tensor's own device (CPU or CUDA).

``fggp_core``'s one selection algorithm is written against ``fggp_core.backend.Backend``; this
class implements its primitives with torch ops, with the same meaning as ``NumpyBackend``.
Counts are 0-d int64 tensors on the device, keys are the int32/int64 bit patterns of the
non-negative scores, and no primitive turns a value into a Python number (no ``.item()``), so
a selection never copies a full tensor to the host and never waits on the device except
inside torch's own ``bincount``. The only host data is the ``Random`` draw (made on the host).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fggp_core.backend import INF_KEY, NumpyBackend, OneDevice

__all__ = ["TorchBackend", "TORCH", "HostTorchBackend", "HOST_TORCH", "backend_of"]

_SCORE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_KEY_DTYPES = {"float32": torch.int32, "float64": torch.int64}


def _device(like: Any) -> torch.device:
    return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")


def _inf_key(keys: torch.Tensor) -> int:
    return INF_KEY["float64" if keys.dtype == torch.int64 else "float32"]


class TorchBackend(OneDevice):
    """``fggp_core.backend.Backend`` over torch tensors.

    ``block``: entries per block of the ``histogram`` scan (default 2**20), so its int32
    temporaries are one block long. ``first_true`` cuts the mask into at most ~256 rows of at
    least ``min(block, 2**16)`` entries and needs one row's int32 running count.
    """

    name = "torch"
    digit_bits = 16  # 2 bincount passes over int32 keys, 4 over int64 keys
    max_count = 2**63 - 1

    def __init__(self, block: int = 1 << 20) -> None:
        self.block = int(block)

    # -- describing and moving arrays ----------------------------------------------------
    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: torch.Tensor) -> str:
        return str(x.dtype).removeprefix("torch.")

    def to_host(self, x: torch.Tensor) -> np.ndarray:
        x = x.detach()
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16 of its own; ml_dtypes does (same bits)
            import ml_dtypes

            return x.cpu().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return x.cpu().numpy()

    def from_host(self, x: np.ndarray, like: Any) -> torch.Tensor:
        x = np.ascontiguousarray(x)
        if x.dtype.name == "bfloat16":
            return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16).to(_device(like))
        return torch.from_numpy(x).to(_device(like))

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().reshape(-1)

    def unflat(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return x.reshape(shape)

    # -- scalars -------------------------------------------------------------------------
    def scalar(self, value: int, like: Any = None) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.int64, device=_device(like))

    def where(self, condition: Any, a: Any, b: Any) -> torch.Tensor:
        return torch.where(torch.as_tensor(condition), a, b)

    def minimum(self, a: Any, b: Any) -> torch.Tensor:
        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))

    def floor_mul(self, rate: Any, n: torch.Tensor) -> torch.Tensor:
        # rate is a host float64; one IEEE float64 multiply, as the host computes float(rate) * float(n)
        return torch.floor(n.to(torch.float64) * float(rate)).to(torch.int64)

    # -- the primitives of selection -----------------------------------------------------
    def keys(
        self, t: torch.Tensor, other: torch.Tensor | None, score: str, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        t = t.detach().reshape(-1)
        dtype = _SCORE_DTYPES[score]
        if out is not None and out.dtype == _KEY_DTYPES[score] and out.shape == t.shape and out.device == t.device:
            out = out.view(dtype)  # the previous stage's keys of this tensor: no new allocation
        else:
            out = torch.empty(t.numel(), dtype=dtype, device=t.device)
        # a new array in any case (never the weight itself); bfloat16/float16 are upcast exactly first
        if t.dtype != dtype:
            t = out.copy_(t)
        if other is None:
            torch.abs(t, out=out)  # -0.0 becomes +0.0: the sign bit is clear
        else:
            other = other.detach().reshape(-1).to(device=t.device, dtype=dtype)  # as NumPy: factors in the score dtype
            torch.mul(t, other, out=out).abs_()  # the product rounded once, in the score dtype
        return out.view(_KEY_DTYPES[score])

    def host_keys(self, values: np.ndarray, like: Any) -> torch.Tensor:
        score = "float32" if values.dtype.itemsize <= 4 else "float64"
        return self.keys(torch.from_numpy(np.ascontiguousarray(values)).to(_device(like)), None, score)

    def exclude(self, keys: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
        """The +inf key outside ``among``, in integer arithmetic (a bool-masked fill is a slow scalar
        loop on CPU): ``(keys - INF) * among + INF``; keys are >= 0, so nothing overflows."""
        inf = _inf_key(keys)
        return keys.sub_(inf).mul_(among).add_(inf)

    def as_key(self, value: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return value.to(keys.dtype)

    def nonfinite(self, keys: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
        return torch.count_nonzero((keys >= _inf_key(keys)).logical_and_(among))

    def histogram(self, keys: torch.Tensor, shift: int, width: int, prefix: torch.Tensor) -> torch.Tensor:
        """Per block: ``d = (key >> shift) - (prefix >> above << width)`` is the digit for keys whose
        bits above ``above = shift + width`` equal the prefix's, < 0 or >= 2**width for the others;
        shifted by one and clamped to [0, 2**width + 1], one ``bincount`` counts all, the two ends drop.
        No boolean filtering: its size would depend on the values (a device sync on CUDA)."""
        size = 1 << width
        top = shift + width >= keys.element_size() * 8 - 1  # the top digit: no bits above it (the sign is clear)
        base = ((prefix >> (shift + width)) << width) - 1  # fits the key dtype: fewer bits than a key
        out = torch.zeros(size if top else size + 2, dtype=torch.int64, device=keys.device)
        for start in range(0, keys.numel(), self.block):
            d = keys[start : start + self.block] >> shift
            if not top:
                d.sub_(base).clamp_(0, size + 1)
            out += torch.bincount(d, minlength=out.numel())
        return out if top else out[1:-1]

    def pick(self, histogram: torch.Tensor, rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cumulative = torch.cumsum(histogram, dim=0)
        digit = torch.searchsorted(cumulative, rank).clamp_(max=histogram.numel() - 1)  # first digit reaching rank
        at = digit.reshape(1)
        before = (cumulative.gather(0, at) - histogram.gather(0, at)).reshape(())  # counted below the digit
        return digit, rank - before

    def count(self, mask: torch.Tensor) -> torch.Tensor:
        return torch.count_nonzero(mask)

    def first_true(self, mask: torch.Tensor, r: Any) -> torch.Tensor:
        """Keep the first ``r`` True entries, in place, with blocks as rows of a 2-D view.

        Rows whose running count before them reaches ``r`` are cleared; the one row where the
        ``r``-th True lies (if any) is cut by its own running count. The row is picked by a
        device index (``index_select``/``index_copy_``), so nothing waits for ``r``.
        """
        if not mask.is_contiguous():
            mask = mask.contiguous()
        n = mask.numel()
        b = max(min(self.block, 1 << 16), -(-n // 256))  # short rows: the cut row's cumsum is cheap
        full = n // b
        rows = [mask[: full * b].view(full, b), mask[full * b :].view(1, n - full * b)]
        rows = [x for x in rows if x.numel()]
        if not rows:
            return mask
        counts = torch.stack([torch.count_nonzero(x[i]) for x in rows for i in range(x.shape[0])])
        r = torch.as_tensor(r, device=mask.device)
        ends = torch.cumsum(counts, dim=0)  # True entries up to the end of each row
        starts = ends - counts
        first = 0
        for x in rows:  # the main rows, then the short last row
            m = x.shape[0]
            s, e = starts[first : first + m], ends[first : first + m]
            first += m
            x.logical_and_((s < r).view(m, 1))  # rows that start at or after the r-th True: none kept
            j = torch.count_nonzero(e <= r).clamp_(max=m - 1).reshape(1)  # the row holding the r-th True
            row = x.index_select(0, j)
            need = r - s.gather(0, j)
            row.logical_and_(torch.cumsum(row, dim=1, dtype=torch.int32) <= need)  # a row has < 2**31 entries
            x.index_copy_(0, j, row)
        return mask


TORCH = TorchBackend()
"""The default backend instance."""


class HostTorchBackend(NumpyBackend):
    """The selection on CPU tensors, run by NumPy's kernels on zero-copy views of them.

    Same primitives, same result as ``TORCH`` (both are ``fggp_core``'s one algorithm), but on a
    CPU torch's single-threaded integer compares, shifts and ``bincount`` are 2-4x slower than
    NumPy's, which made a torch event at 10^7 weights twice the core's time. Inputs are torch
    tensors (read through ``Tensor.numpy()``, no copy; bfloat16 through ml_dtypes); new masks
    come back as CPU torch tensors sharing the NumPy buffers. Memory as the core: per-entry
    temporaries are the reused key buffer, bools and blocks (about 6 bytes per entry).
    """

    name = "torch"

    @staticmethod
    def _np(x: Any) -> np.ndarray:
        return TORCH.to_host(x) if isinstance(x, torch.Tensor) else x

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return TORCH.dtype_name(x) if isinstance(x, torch.Tensor) else super().dtype_name(x)

    def to_host(self, x: Any) -> np.ndarray:
        return self._np(x)

    def from_host(self, x: np.ndarray, like: Any) -> torch.Tensor:
        return TORCH.from_host(x, like)

    def flat(self, x: Any) -> np.ndarray:
        return super().flat(self._np(x))

    def unflat(self, x: Any, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._np(x)).reshape(shape))

    def keys(self, t: Any, other: Any | None, score: str, out: np.ndarray | None = None) -> np.ndarray:
        return super().keys(self._np(t), None if other is None else self._np(other), score, out)


HOST_TORCH = HostTorchBackend()
"""The backend of events whose prunable tensors are all (non-distributed) CPU tensors."""


def backend_of(tensors: Any) -> TorchBackend | HostTorchBackend:
    """``HOST_TORCH`` when every tensor of ``tensors`` (an iterable) is a plain CPU tensor, else ``TORCH``."""
    plain = [t for t in tensors if type(t) in (torch.Tensor, torch.nn.Parameter)]
    return HOST_TORCH if plain and all(t.device.type == "cpu" for t in plain) and len(plain) == len(tensors) else TORCH
