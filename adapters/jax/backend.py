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
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fggp_core.backend import INF_KEY, NUMPY, OneDevice

__all__ = ["JaxBackend", "JAX", "count_dtype", "rate_bits", "materialize"]


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


BLOCK = 1 << 20
"""Entries per block of the per-entry temporaries of ``histogram`` and ``first_true`` (a scatter's
indices and weights, a running count: 8 and 4 bytes per entry). A longer tensor is scanned block
by block in a ``lax.fori_loop`` (one block's temporaries live at a time; the loop runs only inside
an event, where a GPU may read its trip predicate), then its remainder."""


def _by_blocks(n: int, body: Any, init: Any) -> Any:
    """``body(start, size, carry)`` over the blocks of ``range(n)``: full blocks in a loop (traced
    ``start``), the remainder once (static ``start``); returns the carry."""
    full = n // BLOCK
    if full > 1:
        init = jax.lax.fori_loop(0, full, lambda i, c: body(i * BLOCK, BLOCK, c), init)
    elif full == 1:
        init = body(0, BLOCK, init)
    if n - full * BLOCK > 0 or n == 0:
        init = body(full * BLOCK, n - full * BLOCK, init)
    return init


@functools.partial(jax.jit, static_argnames=("shift", "width"))
def _histogram(keys: jax.Array, shift: int, width: int, prefix: jax.Array) -> jax.Array:
    above = shift + width

    def block(start: Any, size: int, out: jax.Array) -> jax.Array:
        x = jax.lax.dynamic_slice_in_dim(keys, start, size)
        digit = ((x >> shift) & ((1 << width) - 1)).astype(jnp.int32)
        weight = jnp.ones(x.shape, count_dtype())
        if above < (63 if keys.dtype == jnp.int64 else 31):  # the sign bit is always clear
            same = (x >> above) == (jnp.asarray(prefix).astype(keys.dtype) >> above)
            weight = same.astype(count_dtype())
        return out.at[digit].add(weight)

    return _by_blocks(keys.shape[0], block, jnp.zeros(1 << width, count_dtype()))


@jax.jit
def _exclude(keys: jax.Array, among: jax.Array) -> jax.Array:
    return jnp.where(among, keys, jnp.array(_inf(keys), keys.dtype))


def _block_sum(n: int, term: Any) -> jax.Array:
    """The sum of ``term(start, size)`` (a count of one block) over the blocks of ``range(n)``: XLA
    materializes a bool array widened to the count type before summing it (4 bytes per entry)."""
    return _by_blocks(n, lambda start, size, total: total + term(start, size), jnp.zeros((), count_dtype()))


@jax.jit
def _nonfinite(keys: jax.Array, among: jax.Array) -> jax.Array:
    # Counted over a bool array (1 byte per entry): the keys' own code fuses into it and into
    # ``exclude``, so the keys are never written whole (a loop over the keys would need them
    # in memory, 4 bytes per entry).
    return _count((keys >= _inf(keys)) & among)


@jax.jit
def _pick(histogram: jax.Array, rank: jax.Array) -> tuple[jax.Array, jax.Array]:
    cumulative = jnp.cumsum(histogram)
    digit = jnp.minimum(jnp.sum(cumulative < rank, dtype=count_dtype()), histogram.size - 1)  # searchsorted
    before = jnp.where(digit > 0, cumulative[jnp.maximum(digit - 1, 0)], 0)
    return digit, (rank - before).astype(count_dtype())


@jax.jit
def _count(mask: jax.Array) -> jax.Array:
    mask = jnp.reshape(mask, -1)
    return _block_sum(mask.shape[0], lambda start, size: jnp.sum(
        jax.lax.dynamic_slice_in_dim(mask, start, size), dtype=count_dtype()))


@jax.jit
def _first_true(mask: jax.Array, r: jax.Array) -> jax.Array:
    def block(start: Any, size: int, carry: tuple) -> tuple:
        out, left = carry  # left: how many True entries may still be kept
        m = jax.lax.dynamic_slice_in_dim(mask, start, size)
        running = jnp.cumsum(m, dtype=count_dtype())
        out = jax.lax.dynamic_update_slice_in_dim(out, m & (running <= left), start, 0)
        return out, left - running[-1] if size else left

    # Every block is written, so the output starts as a copy of ``mask``, made when the loop
    # starts: a constant zeros buffer is built at the program's start and kept (1 byte per entry).
    return _by_blocks(mask.shape[0], block, (mask, jnp.asarray(r, count_dtype())))[0]


# Sums over tensors are single operations. A Python chain of scalar adds (or ``jnp.sum`` of stacked
# scalars, which XLA rewrites into one) is cheap elementwise code that XLA fuses into, and so
# copies into, every per-tensor consumer: a program quadratic in the number of tensors (minutes
# of compile time at a few hundred leaves). A scatter-add of several updates and a cumulative sum
# stay one operation each, computed once.


@jax.jit
def _sum_rows(stacked: jax.Array) -> jax.Array:
    """The sum of ``stacked``'s rows as one scatter-add (exact for integer counts)."""
    n = stacked.shape[0]
    return jnp.zeros((1, *stacked.shape[1:]), stacked.dtype).at[jnp.zeros(n, jnp.int32)].add(stacked)[0]


def materialize(*scalars: Any) -> list[jax.Array]:
    """``scalars`` (same dtype) unchanged, computed once in the program: read by many per-tensor
    operations, their producing code is then not fused into (copied into) each of them."""
    stacked = jnp.stack([jnp.asarray(x) for x in scalars])
    out = _sum_rows(jnp.stack([stacked, jnp.zeros_like(stacked)]))  # two updates: XLA keeps the scatter
    return [out[i] for i in range(len(scalars))]


def materialize_array(x: jax.Array, zero: Any) -> jax.Array:
    """``x`` (1-D) unchanged, written once to a buffer: a producer read by many slices is
    otherwise fused into (copied into) each of them, a program that grows with the slices.
    ``zero``: a traced non-negative integer scalar; ``min(zero, 0)`` is 0 at run time but not
    to XLA, so it keeps the (in-place, one-entry) update that stops the fusion."""
    at = jnp.minimum(jnp.asarray(zero).astype(jnp.int32), 0)
    return jax.lax.dynamic_update_slice(x, x[:1], (at,))


def opaque_ints(values: Sequence[int], seed: Any) -> list[jax.Array]:
    """``values`` as int32 scalars that XLA cannot fold into their readers: each is its own
    buffer, returned by a conditional whose predicate, ``(seed | 1) != 0``, is always true but
    not to XLA (``seed``: any traced integer scalar it cannot know). Per-leaf operations that
    differ only by such a value (an offset) are then one kernel, which XLA CPU compiles once;
    a constant makes each leaf's operation a kernel of its own (about 10 ms of compile time)."""
    values = [int(v) for v in values]
    return list(jax.lax.cond(
        (jnp.asarray(seed) | 1) != 0,
        lambda: tuple(jnp.int32(v) for v in values),
        lambda: tuple(jnp.int32(0) for _ in values),
    ))


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

    def reduce(self, values: Sequence[Any], tensors: Sequence[int]) -> jax.Array:
        """One scatter-add over the tensors (see ``_sum_rows``), not a chain of adds."""
        return values[0] if len(values) == 1 else _sum_rows(jnp.stack([jnp.asarray(v) for v in values]))

    def running(self, counts: Sequence[Any]) -> tuple[list[Any], Any]:
        """One cumulative sum over the stacked counts (see ``_sum_rows``)."""
        if len(counts) == 1:
            return [jnp.zeros((), jnp.asarray(counts[0]).dtype)], counts[0]
        ends = jnp.cumsum(jnp.stack([jnp.asarray(c).astype(count_dtype()) for c in counts]))
        return [jnp.zeros((), ends.dtype), *(ends[i] for i in range(len(counts) - 1))], ends[-1]



JAX = JaxBackend()
