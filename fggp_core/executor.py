"""The primitives the selection algorithm is written against, and their NumPy executor.

One algorithm (``selection.py``), several executors: an adapter that selects on its own
device (PyTorch, JAX, Keras) implements the same small set of methods over its own arrays,
so masks never leave the device and the cross-backend tests check executors, not copies.

Arrays handed to the algorithm must support the operators ``<``, ``==``, ``&``, ``|``, ``~``
and slicing ``x[a:b]`` on flat arrays. Scores are never negative (absolute values or uniform
draws), and NaN/inf are rejected before selection, so +inf safely marks "not a candidate".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["Executor", "NumpyExecutor", "FLOAT_DTYPES", "score_dtype", "split_flat"]

# Names of the floating dtypes fggp accepts, on every backend (bfloat16 via ml_dtypes in NumPy).
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def score_dtype(dtype_names: Sequence[str]) -> str:
    """float64 if any tensor is float64 (exact for mixed groups), else float32 (exact upcast)."""
    return "float64" if "float64" in dtype_names else "float32"


def split_flat(flat: Any, shapes: Sequence[tuple[int, ...]]) -> list[Any]:
    """Cut a flat array into views of ``shapes`` (any array type with slicing and ``reshape``)."""
    out, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(flat[start : start + n].reshape(shape))
        start += n
    return out


class Executor(Protocol):
    """What a backend implements so ``fggp_core.select`` runs on its arrays."""

    name: str

    def shape(self, x: Any) -> tuple[int, ...]: ...
    def dtype_name(self, x: Any) -> str: ...
    def to_host(self, x: Any) -> np.ndarray: ...
    def from_host(self, x: np.ndarray, like: Any) -> Any: ...

    def flat_score(self, tensors: Sequence[Any], others: Sequence[Any] | None, dtype: str) -> Any:
        """Concatenated ``|t|`` (or ``|t * o|``, the product rounded once) in ``dtype``, C order."""

    def flat_mask(self, masks: Sequence[Any]) -> Any:
        """Concatenated flat boolean masks, C order."""

    def split(self, flat: Any, shapes: Sequence[tuple[int, ...]]) -> list[Any]:
        """Cut a flat array back into tensors of ``shapes``."""

    def exclude(self, score: Any, among: Any) -> Any:
        """``score`` where ``among`` else +inf; may overwrite ``score``."""

    def kth_value(self, x: Any, k: Any) -> Any:
        """The k-th smallest value of flat ``x`` (1-based); -inf when ``k == 0``."""

    def first_true(self, mask: Any, r: Any) -> Any:
        """``mask`` with only its first ``r`` True entries (index order) kept."""

    def count(self, mask: Any) -> Any:
        """Number of True entries."""

    def nonfinite(self, score: Any, among: Any) -> Any:
        """Number of entries in ``among`` whose score is NaN or infinite."""

    def zeros(self, like: Any) -> Any:
        """An all-False flat mask the size of ``like``."""


class NumpyExecutor:
    """The reference executor. Memory-lean: per-entry temporaries are bool or in-place."""

    name = "numpy"
    block = 1 << 20  # entries per block when scanning for the r-th True (no int64 array of size N)

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(np.shape(x))

    def dtype_name(self, x: np.ndarray) -> str:
        return np.asarray(x).dtype.name

    def to_host(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def from_host(self, x: np.ndarray, like: Any) -> np.ndarray:
        return x

    def flat_score(self, tensors: Sequence[np.ndarray], others: Sequence[np.ndarray] | None, dtype: str) -> np.ndarray:
        sizes = [int(np.size(t)) for t in tensors]
        out = np.empty(sum(sizes), dtype=dtype)
        start = 0
        for i, (t, n) in enumerate(zip(tensors, sizes)):
            part = out[start : start + n]
            part[...] = np.asarray(t).reshape(-1)  # exact upcast (bfloat16/float16 -> float32)
            if others is not None:
                np.multiply(part, np.asarray(others[i]).reshape(-1).astype(dtype, copy=False), out=part)
            np.abs(part, out=part)  # also maps -0.0 to +0.0
            start += n
        return out

    def flat_mask(self, masks: Sequence[np.ndarray]) -> np.ndarray:
        if len(masks) == 1:
            return np.asarray(masks[0]).reshape(-1).copy()
        return np.concatenate([np.asarray(m).reshape(-1) for m in masks])

    def split(self, flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        return split_flat(flat, shapes)

    def exclude(self, score: np.ndarray, among: np.ndarray) -> np.ndarray:
        np.copyto(score, np.inf, where=~among)
        return score

    def kth_value(self, x: np.ndarray, k: int) -> Any:
        if k == 0:
            return -np.inf
        return np.partition(x, k - 1)[k - 1]

    def first_true(self, mask: np.ndarray, r: int) -> np.ndarray:
        seen = 0
        for start in range(0, mask.size, self.block):
            block = mask[start : start + self.block]
            c = int(np.count_nonzero(block))
            if seen + c >= r:
                cut = start + int(np.flatnonzero(block)[r - seen - 1]) + 1 if r > seen else start
                mask[cut:] = False
                return mask
            seen += c
        return mask

    def count(self, mask: np.ndarray) -> int:
        return int(np.count_nonzero(mask))

    def nonfinite(self, score: np.ndarray, among: np.ndarray) -> int:
        return int(np.count_nonzero(~np.isfinite(score) & among))

    def zeros(self, like: np.ndarray) -> np.ndarray:
        return np.zeros(np.size(like), dtype=bool)


NUMPY = NumpyExecutor()
