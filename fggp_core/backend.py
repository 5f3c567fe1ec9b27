"""The backend contract the one selection algorithm is written against, and the NumPy backend.

A backend is one small class: the same primitives with the same meaning on every framework.

- **Keys.** A score is held as an order-preserving integer key: the bit pattern of the
  non-negative float score (int32 keys for float32 scores, int64 for float64). For
  non-negative IEEE floats the bit pattern orders exactly like the value, ``-0.0`` becomes
  ``+0.0`` (the sign bit is cleared), ``+inf`` is ``INF_KEY`` and every NaN lies above it.
  Integer compares keep selection exact where a device flushes subnormal floats to zero.
- **Counts** are backend integer scalars (int64, or int32 where the backend has no 64-bit
  integers: ``max_count`` says how far they go). The algorithm never turns them into Python
  ints, so it runs unchanged eagerly and under ``jax.jit``.
- **Histograms** of key digits are sums, so per-tensor (and per-shard) histograms add up:
  ``reduce`` adds them over tensors (and, for sharded tensors, over devices with one
  all-reduce); ``tally`` gives per-tensor counts and, for ties in canonical order, the part
  of each count held by devices with earlier blocks of the tensor. On one device both are
  plain sums (``OneDevice``), and these two are the only places where devices talk.
- Every primitive returns a new array or scalar unless it says it may reuse its input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "Backend",
    "NumpyBackend",
    "NUMPY",
    "FLOAT_DTYPES",
    "INF_KEY",
    "score_dtype",
    "key_bits",
    "split_flat",
    "OneDevice",
]

# Names of the floating dtypes fggp accepts, on every backend (bfloat16 via ml_dtypes in NumPy).
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# The key of +inf per score dtype; keys at or above it are non-finite, and non-candidates get it.
INF_KEY = {"float32": 0x7F800000, "float64": 0x7FF0000000000000}
_KEY_DTYPES = {"float32": np.int32, "float64": np.int64}


def score_dtype(dtype_names: Sequence[str]) -> str:
    """float64 if any tensor is float64 (exact for mixed groups), else float32 (exact upcast)."""
    return "float64" if "float64" in dtype_names else "float32"


def key_bits(score: str) -> int:
    """Bits that a key of ``score`` dtype may use (the sign bit is always clear): 31 or 63."""
    return 63 if score == "float64" else 31


def split_flat(flat: Any, shapes: Sequence[tuple[int, ...]]) -> list[Any]:
    """Cut a flat array into views of ``shapes`` (any array type with slicing and ``reshape``)."""
    out, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(flat[start : start + n].reshape(shape))
        start += n
    return out


class Backend(Protocol):
    """What a framework implements so ``fggp_core``'s algorithm runs on its arrays.

    Arrays are flat (1-D) unless a method says otherwise; ``mask`` arrays are bool; ``count``
    values are backend integer scalars of the backend's count type.
    """

    name: str
    digit_bits: int  # radix width of one histogram pass (16: 2 passes over int32 keys)
    max_count: int  # the largest count the backend's count type holds

    # -- describing and moving arrays --------------------------------------------------
    def shape(self, x: Any) -> tuple[int, ...]: ...
    def dtype_name(self, x: Any) -> str: ...
    def to_host(self, x: Any) -> np.ndarray: ...
    def from_host(self, x: np.ndarray, like: Any) -> Any:
        """A host array on ``like``'s device (and sharding, where the backend has one)."""

    def flat(self, x: Any) -> Any:
        """``x`` in C order as a 1-D array (a view where possible)."""

    def unflat(self, x: Any, shape: tuple[int, ...]) -> Any: ...

    # -- scalars -----------------------------------------------------------------------
    def scalar(self, value: int, like: Any = None) -> Any:
        """``value`` as a count-type scalar (on ``like``'s device)."""

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        """Elementwise ``a if condition else b`` (scalars or arrays)."""

    def minimum(self, a: Any, b: Any) -> Any: ...
    def floor_mul(self, rate: Any, n: Any) -> Any:
        """``floor(rate * n)`` in float64 (IEEE multiply, as the host computes it), a count."""

    # -- the primitives of selection ------------------------------------------------------
    def keys(self, t: Any, other: Any | None, score: str, out: Any = None) -> Any:
        """Flat keys of ``|t|`` (or ``|t * other|``, the product rounded once), in ``score`` dtype.

        ``out``: a previous key array of the same tensor that may be overwritten (or None)."""

    def host_keys(self, values: np.ndarray, like: Any) -> Any:
        """Keys of a host float array (the Random draw), on ``like``'s device."""

    def exclude(self, keys: Any, among: Any) -> Any:
        """``keys`` where ``among``, else the +inf key; may overwrite ``keys``."""

    def as_key(self, value: Any, keys: Any) -> Any:
        """A count-type scalar as a scalar of ``keys``' integer type (no widening of ``keys``)."""

    def nonfinite(self, keys: Any, among: Any) -> Any:
        """How many entries of ``among`` have a NaN or infinite score (a count)."""

    def histogram(self, keys: Any, shift: int, width: int, prefix: Any) -> Any:
        """Counts per digit ``(key >> shift) & (2**width - 1)`` of the keys whose bits above
        ``shift + width`` equal ``prefix``'s: an array of ``2**width`` counts."""

    def pick(self, histogram: Any, rank: Any) -> tuple[Any, Any]:
        """The digit holding the ``rank``-th (1-based) counted key, and the rank within it."""

    def count(self, mask: Any) -> Any:
        """Number of True entries (a count)."""

    def first_true(self, mask: Any, r: Any) -> Any:
        """``mask`` with only its first ``r`` True entries kept (``r <= 0``: none); may reuse ``mask``."""

    def reduce(self, values: Sequence[Any], tensors: Sequence[int]) -> Any:
        """The sum of per-tensor ``values`` (counts or histograms, one per tensor of ``tensors``,
        canonical indices) over the tensors and over the devices holding blocks of them, each
        tensor's entries counted once (a replicated block is not added twice)."""

    def tally(self, counts: Sequence[Any], tensors: Sequence[int]) -> tuple[list[Any], list[Any]]:
        """Per tensor of ``tensors``: the ``counts`` summed over the devices holding its blocks,
        and the part of that sum on devices whose block comes earlier in the tensor's C order
        (0 on one device). One collective for all tensors."""

    def running(self, counts: Sequence[Any]) -> tuple[list[Any], Any]:
        """Per tensor, the sum of the ``counts`` before it (0 for the first), and the total.
        ``counts`` are already global (e.g. from ``tally``): no communication."""


class OneDevice:
    """``reduce`` and ``tally`` where every tensor is whole on one device: plain sums; and
    ``running``, which is local on every backend."""

    def reduce(self, values: Sequence[Any], tensors: Sequence[int]) -> Any:
        return sum(values[1:], values[0])

    def running(self, counts: Sequence[Any]) -> tuple[list[Any], Any]:
        before, total = [], 0
        for c in counts:
            before.append(total)
            total = total + c
        return before, total

    def tally(self, counts: Sequence[Any], tensors: Sequence[int]) -> tuple[list[Any], list[Any]]:
        return list(counts), [0] * len(counts)


class NumpyBackend(OneDevice):
    """The reference backend. Memory-lean: per-entry temporaries are bool, in place, or per block."""

    name = "numpy"
    digit_bits = 16
    max_count = 2**63 - 1
    block = 1 << 20  # entries per block for histogram and first-true scans (bounded temporaries)

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(np.shape(x))

    def dtype_name(self, x: np.ndarray) -> str:
        return np.asarray(x).dtype.name

    def to_host(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def from_host(self, x: np.ndarray, like: Any) -> np.ndarray:
        return x

    def flat(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x).reshape(-1)

    def unflat(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return x.reshape(shape)

    def scalar(self, value: int, like: Any = None) -> np.int64:
        return np.int64(value)

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        return np.where(condition, a, b)[()]

    def minimum(self, a: Any, b: Any) -> Any:
        return np.minimum(a, b)

    def floor_mul(self, rate: Any, n: Any) -> np.int64:
        return np.int64(math.floor(float(rate) * float(n)))

    def keys(self, t: np.ndarray, other: np.ndarray | None, score: str, out: np.ndarray | None = None) -> np.ndarray:
        flat = np.asarray(t).reshape(-1)
        if out is not None and out.dtype == _KEY_DTYPES[score] and out.size == flat.size:
            out = out.view(score)  # reuse the buffer: no new pages to fault in
            out[...] = flat  # exact upcast (bfloat16/float16 -> float32)
        else:
            out = flat.astype(score)
        if other is not None:
            np.multiply(out, np.asarray(other).reshape(-1).astype(score, copy=False), out=out)
        np.abs(out, out=out)  # also maps -0.0 to +0.0
        return out.view(_KEY_DTYPES[score])

    def host_keys(self, values: np.ndarray, like: Any) -> np.ndarray:
        return self.keys(values, None, "float32" if values.dtype.itemsize <= 4 else "float64")

    def exclude(self, keys: np.ndarray, among: np.ndarray) -> np.ndarray:
        # key | INF_KEY is >= INF_KEY: "not a candidate" for every finite k-th key. An OR with an
        # int multiple of the mask is ~6x faster than a bool-masked fill; blocks bound the temporary.
        inf = keys.dtype.type(INF_KEY["float64" if keys.dtype == np.int64 else "float32"])
        if among.all():
            return keys
        for start in range(0, keys.size, self.block):
            out = keys[start : start + self.block]
            np.bitwise_or(out, np.logical_not(among[start : start + self.block]).astype(keys.dtype) * inf, out=out)
        return keys

    def as_key(self, value: Any, keys: np.ndarray) -> Any:
        return keys.dtype.type(value)

    def nonfinite(self, keys: np.ndarray, among: np.ndarray) -> np.int64:
        inf = INF_KEY["float64" if keys.dtype == np.int64 else "float32"]
        high = keys >= inf
        return np.int64(np.count_nonzero(high & among) if high.any() else 0)

    def histogram(self, keys: np.ndarray, shift: int, width: int, prefix: Any) -> np.ndarray:
        above = shift + width
        top = int(prefix) >> above
        digit_mask = (1 << width) - 1
        out = np.zeros(1 << width, dtype=np.int64)
        for start in range(0, keys.size, self.block):
            block = keys[start : start + self.block]
            if above < keys.dtype.itemsize * 8 - 1:  # the sign bit is always clear
                block = block[(block >> above) == top]
                out += np.bincount((block >> shift) & digit_mask, minlength=1 << width)
            else:  # the top digit: nothing above it to mask off
                out += np.bincount(block >> shift, minlength=1 << width)
        return out

    def pick(self, histogram: np.ndarray, rank: Any) -> tuple[np.int64, np.int64]:
        cumulative = np.cumsum(histogram)
        digit = min(int(np.searchsorted(cumulative, rank)), histogram.size - 1)  # first digit reaching rank
        return np.int64(digit), np.int64(rank - (cumulative[digit - 1] if digit else 0))

    def count(self, mask: np.ndarray) -> np.int64:
        return np.int64(np.count_nonzero(mask))

    def first_true(self, mask: np.ndarray, r: Any) -> np.ndarray:
        r, seen = int(r), 0
        if r <= 0:
            mask[:] = False
            return mask
        for start in range(0, mask.size, self.block):
            block = mask[start : start + self.block]
            c = int(np.count_nonzero(block))
            if seen + c >= r:
                mask[start + int(np.flatnonzero(block)[r - seen - 1]) + 1 :] = False
                return mask
            seen += c
        return mask


NUMPY = NumpyBackend()
