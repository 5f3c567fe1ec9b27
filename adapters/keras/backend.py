"""The selection primitives over ``keras.ops``: one class for the tensorflow, jax and torch backends.

``fggp_core``'s one selection algorithm is written against ``fggp_core.backend.Backend``; this
class implements its primitives with ``keras.ops``, with the same meaning as ``NumpyBackend``:

- keys are ``ops.view`` bit patterns of the exactly upcast score with the sign bit cleared (an
  integer AND, so ``-0.0`` and a negative NaN get their positive keys without float arithmetic);
- counts are int64 scalars, or int32 on JAX without x64 (``max_count`` says so);
- histograms are one ``ops.bincount`` per pass, ``pick`` is a cumulative sum and a comparison
  count, ``first_true`` a cumulative sum: no primitive turns a value into a Python number, except
  ``floor_mul`` on JAX without x64 (no float64 on the device; Keras selection is eager anyway).

Every primitive runs inside a ``keras.device`` scope of its input's device: Keras's torch
backend otherwise moves every tensor an op converts to its default device (CPU inputs to CUDA).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from fggp_core.backend import INF_KEY, OneDevice

__all__ = ["KerasBackend", "KERAS", "device_of"]

_KEY_DTYPES = {"float32": "int32", "float64": "int64"}
_SIGN_CLEAR = {"int32": 2**31 - 1, "int64": 2**63 - 1}


def device_of(x: Any) -> Any:
    """The device of a backend tensor, in a form ``keras.device`` accepts (None if unknown)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return getattr(x, "device", None) or None
    if backend == "jax":
        devices = getattr(x, "devices", None)
        return next(iter(devices())) if callable(devices) else None
    if backend == "torch":
        device = getattr(x, "device", None)
        return None if device is None else str(device)
    return None


class _On:
    """``keras.device`` of ``like``'s device when it has one, else no scope."""

    def __init__(self, like: Any) -> None:
        device = device_of(like)
        self.scope = keras.device(device) if device is not None else None

    def __enter__(self) -> None:
        if self.scope is not None:
            self.scope.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.scope is not None:
            self.scope.__exit__(*exc)


def _key_dtype(keys: Any) -> str:
    return keras.backend.standardize_dtype(keys.dtype)


def _cumsum(x: Any, dtype: str) -> Any:
    """Running sum of a flat array in ``dtype``. Keras's torch backend computes ``ops.cumsum`` of
    64-bit integers in int32 (its type promotion maps 64-bit types to 32-bit), so torch's own."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.cumsum(x, dim=0, dtype=getattr(torch, dtype))
    return ops.cumsum(x, axis=0, dtype=dtype)


def _no_x64() -> bool:
    """JAX without x64 has neither int64 nor float64 arrays."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return not jax.config.jax_enable_x64


class KerasBackend(OneDevice):
    """``fggp_core.backend.Backend`` over the tensors of the process's Keras backend."""

    name = "keras"
    digit_bits = 16  # 2 bincount passes over int32 keys, 4 over int64 keys

    @property
    def count_dtype(self) -> str:
        return "int32" if _no_x64() else "int64"

    @property
    def max_count(self) -> int:  # type: ignore[override]
        return 2**31 - 1 if _no_x64() else 2**63 - 1

    # -- describing and moving arrays ----------------------------------------------------
    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(int(d) for d in ops.shape(x))

    def dtype_name(self, x: Any) -> str:
        return keras.backend.standardize_dtype(x.dtype)

    def to_host(self, x: Any) -> np.ndarray:
        with _On(x):
            return np.asarray(ops.convert_to_numpy(x))

    def from_host(self, x: np.ndarray, like: Any) -> Any:
        with _On(like):
            return ops.convert_to_tensor(x, dtype=x.dtype.name)

    def flat(self, x: Any) -> Any:
        with _On(x):
            return ops.reshape(x, (-1,))

    def unflat(self, x: Any, shape: tuple[int, ...]) -> Any:
        with _On(x):
            return ops.reshape(x, shape)

    # -- scalars -------------------------------------------------------------------------
    def scalar(self, value: int, like: Any = None) -> Any:
        with _On(like):
            return ops.convert_to_tensor(value, dtype=self.count_dtype)

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        with _On(a):
            return ops.where(condition, a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        with _On(a):  # not ops.minimum: Keras promotes int64 operands to int32 there (torch)
            return ops.where(ops.less(a, b), a, b)

    def floor_mul(self, rate: Any, n: Any) -> Any:
        if _no_x64():  # no float64 on the device: the host's float64 multiply (eager only)
            return self.scalar(math.floor(float(rate) * float(self.to_host(n))), like=n)
        with _On(n):  # one IEEE float64 multiply, as the host computes float(rate) * float(n)
            product = ops.multiply(ops.cast(n, "float64"), ops.convert_to_tensor(rate, dtype="float64"))
            # The cast truncates toward 0 (ops.floor would return float32 for float64 input under
            # Keras's type promotion); one less where that rounded a negative product up (GraNet's
            # negated rate: floor(-r * n) = -ceil(r * n)).
            truncated = ops.cast(product, self.count_dtype)
            above = ops.greater(ops.cast(truncated, "float64"), product)
            return ops.where(above, truncated - ops.cast(1, self.count_dtype), truncated)

    # -- the primitives of selection -----------------------------------------------------
    def keys(self, t: Any, other: Any | None, score: str, out: Any = None) -> Any:
        # ``out`` (a buffer to reuse) is ignored: keras.ops has no in-place ops.
        key = _KEY_DTYPES[score]
        with _On(t):
            x = ops.cast(ops.reshape(t, (-1,)), score)  # exact upcast (bfloat16/float16 -> float32)
            if other is not None:  # the factors rounded to the score dtype, the product rounded once
                x = ops.multiply(x, ops.cast(ops.reshape(other, (-1,)), score))
            # |x| as bits: clear the sign bit (also of -0.0 and of a negative NaN)
            return ops.bitwise_and(ops.view(x, key), ops.convert_to_tensor(_SIGN_CLEAR[key], dtype=key))

    def host_keys(self, values: np.ndarray, like: Any) -> Any:
        score = "float32" if values.dtype.itemsize <= 4 else "float64"
        return self.keys(self.from_host(np.ascontiguousarray(values, dtype=score), like), None, score)

    def exclude(self, keys: Any, among: Any) -> Any:
        key = _key_dtype(keys)
        with _On(keys):
            inf = ops.convert_to_tensor(INF_KEY["float64" if key == "int64" else "float32"], dtype=key)
            return ops.where(among, keys, inf)

    def as_key(self, value: Any, keys: Any) -> Any:
        with _On(keys):
            return ops.cast(value, _key_dtype(keys))

    def nonfinite(self, keys: Any, among: Any) -> Any:
        key = _key_dtype(keys)
        with _On(keys):
            inf = ops.convert_to_tensor(INF_KEY["float64" if key == "int64" else "float32"], dtype=key)
            return self.count(ops.logical_and(ops.greater_equal(keys, inf), among))

    def histogram(self, keys: Any, shift: int, width: int, prefix: Any) -> Any:
        """``d = (key >> shift) - (prefix >> above << width)`` is the digit of the keys whose bits
        above ``above = shift + width`` equal the prefix's, and < 0 or >= 2**width for the others;
        clipped to [-1, 2**width] and moved up by one, one ``bincount`` counts all, the ends drop."""
        size = 1 << width
        with _On(keys):
            key = _key_dtype(keys)
            base = ops.left_shift(ops.right_shift(ops.cast(prefix, key), shift + width), width)
            d = ops.add(ops.clip(ops.subtract(ops.right_shift(keys, shift), base), -1, size), 1)
            # Keras counts in int32 without weights: count-typed weights where a bin could overflow it.
            weights = None if self.shape(keys)[0] < 2**31 else ops.ones_like(d, dtype=self.count_dtype)
            counts = ops.bincount(d, weights=weights, minlength=size + 2)
            return ops.cast(counts[1 : size + 1], self.count_dtype)

    def pick(self, histogram: Any, rank: Any) -> tuple[Any, Any]:
        with _On(histogram):
            cumulative = _cumsum(histogram, self.count_dtype)
            below = self.count(ops.less(cumulative, rank))  # digits whose cumulative count is short of rank
            digit = self.minimum(below, self.scalar(self.shape(histogram)[0] - 1, histogram))  # first reaching rank
            before = ops.subtract(ops.take(cumulative, digit), ops.take(histogram, digit))
            return digit, ops.subtract(rank, before)

    def count(self, mask: Any) -> Any:
        with _On(mask):
            return ops.sum(ops.cast(mask, self.count_dtype))

    def first_true(self, mask: Any, r: Any) -> Any:
        with _On(mask):
            seen = _cumsum(ops.cast(mask, self.count_dtype), self.count_dtype)  # Trues up to and including each
            return ops.logical_and(mask, ops.less_equal(seen, ops.cast(r, self.count_dtype)))



KERAS = KerasBackend()
"""The backend instance ``PruningCallback`` and ``select`` use."""

