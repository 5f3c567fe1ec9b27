"""A new fggp backend is one file: this one runs the selection on any Array API namespace.

It implements every primitive of ``fggp_core.Backend`` with the Array API standard alone
(checked here with ``array_api_strict``), except one: the standard has no bitcast, so the
float -> integer key step goes through DLPack to NumPy and back (``bitcast`` below; a real
library such as CuPy or MLX has a native bitcast/view and uses it instead). The contract tests
(``tests/test_contract.py``) run on it unchanged, next to NumPy, PyTorch, JAX and Keras.

    import array_api_strict as xp
    import fggp_core as F
    from array_api_backend import ArrayAPIBackend

    masks = F.select(F.FGGP(0.5), weights, grads, masks, k, backend=ArrayAPIBackend(xp))

The Array API also has no ``bincount``: a histogram is a sort of the digits and two
``searchsorted`` calls (O(N log N)), with small digits (8 bits, 4 passes over int32 keys).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fggp_core.backend import INF_KEY, OneDevice

_KEYS = {"float32": np.int32, "float64": np.int64}


class ArrayAPIBackend(OneDevice):
    """``fggp_core.Backend`` over the arrays of the Array API namespace ``xp``."""

    name = "array-api"
    digit_bits = 8
    max_count = 2**63 - 1

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    # -- describing and moving arrays --------------------------------------------------------
    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).rsplit(".", 1)[-1]

    def to_host(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def from_host(self, x: np.ndarray, like: Any) -> Any:
        return self.xp.from_dlpack(np.ascontiguousarray(x))

    def flat(self, x: Any) -> Any:
        return self.xp.reshape(x, (-1,))

    def unflat(self, x: Any, shape: tuple[int, ...]) -> Any:
        return self.xp.reshape(x, shape)

    # -- scalars -------------------------------------------------------------------------------
    def scalar(self, value: int, like: Any = None) -> Any:
        return self.xp.asarray(value, dtype=self.xp.int64)

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        return self.xp.where(condition, a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return self.xp.minimum(a, b)

    def floor_mul(self, rate: Any, n: Any) -> Any:
        xp = self.xp
        return xp.astype(xp.floor(xp.asarray(rate, dtype=xp.float64) * xp.astype(n, xp.float64)), xp.int64)

    # -- selection primitives ------------------------------------------------------------------
    def bitcast(self, x: Any, score: str) -> Any:
        """The one step outside the standard: reinterpret float bits as integers."""
        return self.xp.from_dlpack(np.from_dlpack(x).view(_KEYS[score]).copy())

    def keys(self, t: Any, other: Any | None, score: str, out: Any = None) -> Any:
        xp = self.xp
        x = xp.astype(xp.reshape(t, (-1,)), getattr(xp, score))  # exact upcast
        if other is not None:
            x = x * xp.astype(xp.reshape(other, (-1,)), getattr(xp, score))
        return self.bitcast(xp.abs(x), score)  # abs maps -0.0 to +0.0

    def host_keys(self, values: np.ndarray, like: Any) -> Any:
        score = "float32" if values.dtype.itemsize <= 4 else "float64"
        return self.keys(self.from_host(values, like), None, score)

    def _inf(self, keys: Any) -> Any:
        return self.xp.asarray(INF_KEY["float64" if keys.dtype == self.xp.int64 else "float32"], dtype=keys.dtype)

    def exclude(self, keys: Any, among: Any) -> Any:
        return self.xp.where(among, keys, self._inf(keys))

    def as_key(self, value: Any, keys: Any) -> Any:
        return self.xp.astype(value, keys.dtype)

    def nonfinite(self, keys: Any, among: Any) -> Any:
        return self.count((keys >= self._inf(keys)) & among)

    def histogram(self, keys: Any, shift: int, width: int, prefix: Any) -> Any:
        xp = self.xp
        above = shift + width
        prefix = xp.astype(prefix, keys.dtype)
        match = (keys >> above) == (prefix >> above)
        digits = xp.sort(xp.where(match, (keys >> shift) & ((1 << width) - 1), 1 << width))  # misses sort last
        bins = xp.arange(1 << width, dtype=keys.dtype)
        counts = xp.searchsorted(digits, bins, side="right") - xp.searchsorted(digits, bins, side="left")
        return xp.astype(counts, xp.int64)

    def pick(self, histogram: Any, rank: Any) -> tuple[Any, Any]:
        xp = self.xp
        cumulative = xp.cumulative_sum(histogram)
        digit = xp.minimum(self.count(cumulative < rank), self.scalar(histogram.shape[0] - 1))
        before = xp.where(digit > 0, xp.take(cumulative, xp.reshape(xp.maximum(digit - 1, 0), (1,)))[0], 0)
        return digit, rank - before

    def count(self, mask: Any) -> Any:
        return self.xp.sum(self.xp.astype(mask, self.xp.int64))

    def first_true(self, mask: Any, r: Any) -> Any:
        xp = self.xp
        return mask & (xp.cumulative_sum(xp.astype(mask, xp.int64)) <= r) if math.prod(mask.shape) else mask

