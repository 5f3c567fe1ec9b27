"""The backend primitives on JAX arrays, so ``fggp_core``'s one selection algorithm runs on device.

Every primitive is free of Python branches on values (branches on shapes and dtypes are
static under ``jax.jit``): counts, ``k``, ranks and the rate may be traced, so the same code
runs eagerly (``fggp.jax.select``) and inside ``jax.jit`` (``select_jit``, ``wrap``).

- **Keys** are the integer bit patterns of the non-negative scores, sign bit cleared (int32
  for float32 scores, int64 for float64 under ``jax_enable_x64``). Integer compares keep the
  order exact where XLA flushes subnormal floats to zero (it does on CPU). bfloat16 widens
  to float32 by a shift of its bits (exact, no flush).
- **Counts** are int64 when ``jax_enable_x64`` is on, else int32; ``max_count`` follows, and
  the core refuses bigger problems (``check_counts``) with a ``ConfigError``.
- **Rates** (``floor_mul``) are multiplied in float64 under ``jax.enable_x64`` even without
  x64: one IEEE multiply and a floor, the host's value exactly. Without x64 a float64 cannot
  cross ``jax.jit``'s boundary, so a traced rate may come as its bit pattern (``rate_bits``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fggp_core.backend import INF_KEY, NUMPY, OneDevice

__all__ = ["JaxBackend", "JAX", "count_dtype", "rate_bits"]


def count_dtype() -> Any:
    """The count type now: int64 under ``jax_enable_x64``, else int32 (read at trace time)."""
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def rate_bits(rate: Any) -> np.ndarray:
    """The float64 bit pattern of ``rate`` (or of each rate) as uint32 ``[..., 2]`` (high, low):
    how a float64 rate crosses ``jax.jit`` without x64; ``floor_mul`` takes it back exactly."""
    bits = np.asarray(rate, np.float64).view(np.uint64)
    return np.stack([bits >> np.uint64(32), bits & np.uint64(0xFFFFFFFF)], axis=-1).astype(np.uint32)


def _as_float(t: Any, score: str) -> jax.Array:
    """``t`` as a flat float of ``score`` dtype; bfloat16 -> float32 by a bit shift (exact)."""
    t = jnp.asarray(t).reshape(-1)
    if t.dtype == jnp.bfloat16 and score == "float32":
        wide = jax.lax.bitcast_convert_type(t, jnp.uint16).astype(jnp.uint32) << 16
        return jax.lax.bitcast_convert_type(wide, jnp.float32)
    return t.astype(score)


def _inf(keys: jax.Array) -> int:
    return INF_KEY["float64" if keys.dtype == jnp.int64 else "float32"]


# Each primitive is one jitted kernel: eagerly that is one dispatch and one compilation per
# shape instead of one per jnp op; under an outer jax.jit it is simply inlined.


@functools.partial(jax.jit, static_argnames=("score",))
def _keys(t: jax.Array, other: jax.Array | None, score: str) -> jax.Array:
    x = _as_float(t, score)
    if other is not None:
        x = x * _as_float(other, score)  # rounded once in the score dtype
    ints = jnp.int64 if score == "float64" else jnp.int32
    sign_off = np.array(np.iinfo(np.dtype(ints)).max, dtype=ints)  # |x|, and -0.0 -> +0.0
    return jax.lax.bitcast_convert_type(x, ints) & sign_off


@jax.jit
def _exclude(keys: jax.Array, among: jax.Array) -> jax.Array:
    return jnp.where(among, keys, jnp.array(_inf(keys), keys.dtype))


@jax.jit
def _nonfinite(keys: jax.Array, among: jax.Array) -> jax.Array:
    return jnp.sum((keys >= _inf(keys)) & among, dtype=count_dtype())


@functools.partial(jax.jit, static_argnames=("shift", "width"))
def _histogram(keys: jax.Array, shift: int, width: int, prefix: jax.Array) -> jax.Array:
    above = shift + width
    digit = ((keys >> shift) & ((1 << width) - 1)).astype(jnp.int32)
    weight = jnp.ones(keys.shape, count_dtype())
    if above < (63 if keys.dtype == jnp.int64 else 31):  # the sign bit is always clear
        same = (keys >> above) == (jnp.asarray(prefix).astype(keys.dtype) >> above)
        weight = same.astype(count_dtype())
    return jnp.zeros(1 << width, count_dtype()).at[digit].add(weight)


@jax.jit
def _pick(histogram: jax.Array, rank: jax.Array) -> tuple[jax.Array, jax.Array]:
    cumulative = jnp.cumsum(histogram)
    digit = jnp.minimum(jnp.sum(cumulative < rank, dtype=count_dtype()), histogram.size - 1)  # searchsorted
    before = jnp.where(digit > 0, cumulative[jnp.maximum(digit - 1, 0)], 0)
    return digit, (rank - before).astype(count_dtype())


@jax.jit
def _count(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask, dtype=count_dtype())


@jax.jit
def _first_true(mask: jax.Array, r: jax.Array) -> jax.Array:
    return mask & (jnp.cumsum(mask, dtype=count_dtype()) <= r)


class JaxBackend(OneDevice):
    """``fggp_core.backend.Backend`` over ``jax.Array`` (any device, any sharding; traceable)."""

    name = "jax"
    digit_bits = 11  # 3 histogram passes over int32 keys, 2048 bins each

    @property
    def max_count(self) -> int:
        return 2**63 - 1 if jax.config.jax_enable_x64 else 2**31 - 1

    # -- describing and moving arrays --------------------------------------------------
    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(jnp.shape(x))

    def dtype_name(self, x: Any) -> str:
        return np.dtype(x.dtype).name if hasattr(x, "dtype") else jnp.asarray(x).dtype.name

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(jax.device_get(x))

    def from_host(self, x: np.ndarray, like: Any) -> jax.Array:
        """``x`` with ``like``'s sharding when ``like`` is a concrete array of the same shape."""
        sharding = getattr(like, "sharding", None)
        if sharding is not None and jnp.shape(like) == np.shape(x) and not isinstance(like, jax.core.Tracer):
            return jax.device_put(x, sharding)
        return jnp.asarray(x)

    def flat(self, x: Any) -> jax.Array:
        return jnp.reshape(x, -1)

    def unflat(self, x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jnp.reshape(x, shape)

    # -- scalars -----------------------------------------------------------------------
    def scalar(self, value: int, like: Any = None) -> jax.Array:
        return jnp.asarray(value, count_dtype())

    def where(self, condition: Any, a: Any, b: Any) -> jax.Array:
        return jnp.where(condition, a, b)

    def minimum(self, a: Any, b: Any) -> jax.Array:
        return jnp.minimum(a, b)

    def floor_mul(self, rate: Any, n: Any) -> jax.Array:
        """``floor(rate * n)`` in float64. ``rate``: a float, a float64 array, or uint32 ``[2]``
        bits from ``rate_bits`` (possibly traced)."""
        out = count_dtype()
        with jax.enable_x64(True):
            if getattr(rate, "dtype", None) == jnp.uint32:
                hi, lo = jnp.asarray(rate, jnp.uint64)[0], jnp.asarray(rate, jnp.uint64)[1]
                r = jax.lax.bitcast_convert_type((hi << 32) | lo, jnp.float64)
            else:
                r = jnp.asarray(rate, jnp.float64)
            return jnp.floor(r * jnp.asarray(n).astype(jnp.float64)).astype(out)

    # -- the primitives of selection ------------------------------------------------------
    def keys(self, t: Any, other: Any | None, score: str, out: Any = None) -> jax.Array:
        """``out`` is ignored: JAX arrays are immutable (XLA reuses buffers itself under jit)."""
        return _keys(t, other, score)

    def host_keys(self, values: np.ndarray, like: Any) -> jax.Array:
        return jnp.asarray(NUMPY.host_keys(np.asarray(values), None))

    def exclude(self, keys: jax.Array, among: jax.Array) -> jax.Array:
        return _exclude(keys, among)

    def as_key(self, value: Any, keys: jax.Array) -> jax.Array:
        return jnp.asarray(value).astype(keys.dtype)

    def nonfinite(self, keys: jax.Array, among: jax.Array) -> jax.Array:
        return _nonfinite(keys, among)

    def histogram(self, keys: jax.Array, shift: int, width: int, prefix: Any) -> jax.Array:
        """Scatter-add of the digits into ``2**width`` bins (static length; traced ``prefix``)."""
        return _histogram(keys, shift, width, prefix)

    def pick(self, histogram: jax.Array, rank: Any) -> tuple[jax.Array, jax.Array]:
        """Loop-free: the digit is the number of cumulative counts below ``rank`` (searchsorted)."""
        return _pick(histogram, rank)

    def count(self, mask: jax.Array) -> jax.Array:
        return _count(mask)

    def first_true(self, mask: jax.Array, r: Any) -> jax.Array:
        return _first_true(mask, r)



JAX = JaxBackend()
