"""The executor primitives on JAX arrays, so ``fggp_core``'s one selection algorithm runs on device.

Scores are held as the **integer bit patterns** of the non-negative float scores (int32 for
float32 scores, int64 for float64 scores under ``jax_enable_x64``). For non-negative IEEE
floats the bit pattern orders exactly like the value, ``-0.0`` maps to the pattern of ``+0.0``,
``+inf`` is ``0x7f800000`` and every NaN lies above it. Comparing integers keeps selection
exact where XLA flushes subnormal floats to zero (it does on CPU: a subnormal |w| would
otherwise compare equal to 0 and break the (score, index) order).

Every primitive is free of Python branches on values: ``k`` and ``r`` may be traced, so the
same executor runs eagerly (``fggp.jax.select``) and inside ``jax.jit`` (``wrap``'s update).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fggp_core.executor import split_flat

__all__ = ["JaxExecutor", "JAX", "score_bits", "bits_dtype", "host_score_bits"]

_INF32 = 0x7F800000
_INF64 = 0x7FF0000000000000


def bits_dtype(score_dtype: str) -> Any:
    """Integer type holding a score of ``score_dtype`` ("float32" or "float64")."""
    return jnp.int64 if score_dtype == "float64" else jnp.int32


def inf_bits(dtype: Any) -> int:
    return _INF64 if jnp.dtype(dtype) == jnp.int64 else _INF32


def _as_score_float(t: jax.Array, dtype: str) -> jax.Array:
    """``t`` as a float of ``dtype``; bfloat16 -> float32 by a shift of its bits (exact, no flush)."""
    t = jnp.asarray(t)
    if t.dtype == jnp.bfloat16 and dtype == "float32":
        wide = jax.lax.bitcast_convert_type(t, jnp.uint16).astype(jnp.uint32) << 16
        return jax.lax.bitcast_convert_type(wide, jnp.float32)
    return t.astype(dtype)


def score_bits(t: jax.Array, other: jax.Array | None, dtype: str) -> jax.Array:
    """Flat ``|t|`` (or ``|t * other|``, rounded once in ``dtype``) as integer bits."""
    x = _as_score_float(t, dtype).reshape(-1)
    if other is not None:
        x = x * _as_score_float(other, dtype).reshape(-1)
    ints = bits_dtype(dtype)
    sign_off = np.array(np.iinfo(np.dtype(ints)).max, dtype=ints)  # clears the sign bit: |x|, -0 -> +0
    return jax.lax.bitcast_convert_type(x, ints) & sign_off


def host_score_bits(x: np.ndarray) -> np.ndarray:
    """A host float score array (e.g. the Random draw, float32) as the executor's bits."""
    x = np.abs(np.asarray(x, dtype=np.float32 if np.asarray(x).dtype.itemsize <= 4 else np.float64))
    return x.view(np.int32 if x.dtype == np.float32 else np.int64)


def _digits(bits: int, width: int = 11) -> list[tuple[int, int]]:
    """(shift, width) of each radix digit of a ``bits``-bit key, most significant first."""
    out, top = [], bits
    while top > 0:
        w = min(width, top)
        out.append((top - w, w))
        top -= w
    return out


@jax.jit
def _kth_bits(x: jax.Array, k: jax.Array) -> jax.Array:
    """The k-th smallest (1-based) of non-negative integer bits ``x``; -1 when ``k == 0``.

    Radix select, no sort: per digit of at most 11 bits (3 digits for int32 keys), one
    histogram of the candidates sharing the prefix found so far, then its cumulative counts
    say which digit holds the k-th entry.
    """
    count_type = jnp.int64 if x.dtype == jnp.int64 else jnp.int32
    k = jnp.asarray(k, count_type)
    prefix, rank = jnp.zeros((), x.dtype), k
    total = 63 if x.dtype == jnp.int64 else 31
    for shift, width in _digits(total):
        digit = ((x >> shift) & ((1 << width) - 1)).astype(jnp.int32)
        above = shift + width
        same = jnp.ones_like(x, bool) if above >= total else (x >> above) == (prefix >> above)
        hist = jnp.zeros(1 << width, count_type).at[digit].add(same.astype(count_type))
        cumulative = jnp.cumsum(hist)
        d = jnp.sum(cumulative < rank, dtype=jnp.int32)  # searchsorted(side="left"), loop-free
        rank = rank - jnp.where(d > 0, cumulative[jnp.maximum(d - 1, 0)], 0)
        prefix = prefix | (d.astype(x.dtype) << shift)
    return jnp.where(k > 0, prefix, jnp.array(-1, x.dtype))


@jax.jit
def _first_true(mask: jax.Array, r: jax.Array) -> jax.Array:
    return mask & (jnp.cumsum(mask, dtype=jnp.int32) <= r)


class JaxExecutor:
    """``fggp_core.Executor`` over ``jax.Array`` (any device, any sharding; traceable)."""

    name = "jax"

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(jnp.shape(x))

    def dtype_name(self, x: Any) -> str:
        return jnp.asarray(x).dtype.name if not hasattr(x, "dtype") else np.dtype(x.dtype).name

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(jax.device_get(x))

    def from_host(self, x: np.ndarray, like: Any) -> jax.Array:
        """Masks stay bool; a float host array is a score (the Random draw) and becomes bits."""
        x = np.asarray(x)
        if x.dtype != np.bool_:
            x = host_score_bits(x)
        sharding = getattr(like, "sharding", None)
        if sharding is not None and tuple(jnp.shape(like)) == x.shape and not isinstance(like, jax.core.Tracer):
            return jax.device_put(x, sharding)
        return jnp.asarray(x)

    def flat_score(self, tensors: Sequence[Any], others: Sequence[Any] | None, dtype: str) -> jax.Array:
        parts = [score_bits(t, None if others is None else others[i], dtype) for i, t in enumerate(tensors)]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

    def flat_mask(self, masks: Sequence[Any]) -> jax.Array:
        parts = [jnp.asarray(m).reshape(-1) for m in masks]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

    def split(self, flat: jax.Array, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
        return split_flat(flat, shapes)

    def exclude(self, score: jax.Array, among: jax.Array) -> jax.Array:
        return jnp.where(among, score, jnp.array(inf_bits(score.dtype), score.dtype))

    def kth_value(self, x: jax.Array, k: Any) -> jax.Array:
        return _kth_bits(x, k)

    def first_true(self, mask: jax.Array, r: Any) -> jax.Array:
        return _first_true(mask, jnp.asarray(r, jnp.int32))

    def count(self, mask: jax.Array) -> jax.Array:
        return jnp.sum(mask, dtype=jnp.int32)

    def nonfinite(self, score: jax.Array, among: jax.Array) -> jax.Array:
        return jnp.sum((score >= inf_bits(score.dtype)) & among, dtype=jnp.int32)

    def zeros(self, like: Any) -> jax.Array:
        return jnp.zeros(int(np.size(like)) if not hasattr(like, "size") else like.size, dtype=bool)


JAX = JaxExecutor()
