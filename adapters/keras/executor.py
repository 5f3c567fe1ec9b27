"""The Executor of fggp_core's selection algorithm for Keras 3 tensors, on any Keras backend.

Every primitive is written with ``keras.ops`` and runs on the device of its input tensors:
each runs in a ``keras.device`` scope of its input's device (Keras's torch backend moves any
tensor an op converts to the default device, e.g. CPU inputs to CUDA, without it). Counts and ranks
come back to the host as Python ints, as the core's algorithm expects; scores and masks stay
on the device. The semantics are the core's bit for bit:

- ``flat_score`` upcasts to the score dtype first (``|t|``; ``|t * o|`` is the product of the
  upcast operands, rounded once), so -0.0 becomes +0.0 exactly as in NumPy;
- ``kth_value`` is 1-based, -inf for ``k == 0``, and orders NaN after +inf as NumPy's
  ``partition`` does (the backends' sorts disagree about NaN, so NaN is handled explicitly);
- ``first_true`` keeps the first ``r`` Trues in index order (a cumulative sum, no loop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

import fggp_core

__all__ = ["KerasExecutor", "KERAS", "select", "device_of"]


def device_of(x: Any) -> Any:
    """The device of a backend tensor, in a form ``keras.device`` accepts (None if unknown)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return getattr(x, "device", None) or None
    if backend == "jax":
        devices = getattr(x, "devices", None)
        return next(iter(devices())) if devices is not None else None
    if backend == "torch":
        device = getattr(x, "device", None)
        return None if device is None else str(device)
    return None


class _On:
    """``keras.device(device)`` when a device is known, else no scope."""

    def __init__(self, like: Any) -> None:
        device = device_of(like)
        self.scope = keras.device(device) if device is not None else None

    def __enter__(self) -> None:
        if self.scope is not None:
            self.scope.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.scope is not None:
            self.scope.__exit__(*exc)


class KerasExecutor:
    """fggp_core's Executor protocol over the tensors of the current Keras backend."""

    name = "keras"

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

    def flat_score(self, tensors: Sequence[Any], others: Sequence[Any] | None, dtype: str) -> Any:
        with _On(tensors[0]):
            parts = []
            for i, t in enumerate(tensors):
                flat = ops.cast(ops.reshape(t, (-1,)), dtype)
                if others is not None:
                    flat = ops.multiply(flat, ops.cast(ops.reshape(others[i], (-1,)), dtype))
                parts.append(ops.abs(flat))
            return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)

    def flat_mask(self, masks: Sequence[Any]) -> Any:
        with _On(masks[0]):
            parts = [ops.reshape(m, (-1,)) for m in masks]
            return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)

    def split(self, flat: Any, shapes: Sequence[tuple[int, ...]]) -> list[Any]:
        out, start = [], 0
        with _On(flat):
            for shape in shapes:
                n = math.prod(shape)
                out.append(ops.reshape(flat[start : start + n], shape))
                start += n
        return out

    def exclude(self, score: Any, among: Any) -> Any:
        with _On(score):
            return ops.where(among, score, ops.full_like(score, np.inf))

    def kth_value(self, x: Any, k: int) -> Any:
        k = int(k)
        if k == 0:
            return -np.inf
        with _On(x):
            nan = ops.isnan(x)
        n_nan = self.count(nan)
        if k > int(ops.shape(x)[0]) - n_nan:  # NumPy's partition puts NaN after +inf
            return np.nan
        with _On(x):
            finite_order = ops.where(nan, ops.full_like(x, np.inf), x) if n_nan else x
            # The k smallest of x are the k largest of -x (negation is exact).
            values, _ = ops.top_k(ops.negative(finite_order), k, sorted=True)
            return ops.negative(values[k - 1])

    def first_true(self, mask: Any, r: int) -> Any:
        r = int(r)
        with _On(mask):
            rank = ops.cumsum(ops.cast(mask, "int32"), axis=0)
            return ops.logical_and(mask, ops.less_equal(rank, r))

    def count(self, mask: Any) -> int:
        with _On(mask):
            return int(ops.convert_to_numpy(ops.sum(ops.cast(mask, "int32"))))

    def nonfinite(self, score: Any, among: Any) -> int:
        with _On(score):
            bad = ops.logical_and(ops.logical_not(ops.isfinite(score)), among)
        return self.count(bad)

    def zeros(self, like: Any) -> Any:
        with _On(like):
            return ops.zeros((math.prod(self.shape(like)),), dtype="bool")


KERAS = KerasExecutor()


def select(
    method: fggp_core.Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
) -> dict[str, Any]:
    """``fggp_core.select`` on Keras backend tensors, run with ``keras.ops`` on their device.

    Same arguments and result as the core (masks: bool tensors, True = kept); bit-identical
    to ``fggp_core.select`` on the values the backend holds.
    """
    return fggp_core.select(method, weights, grads, masks, k, scope=scope, step=step, executor=KERAS)
