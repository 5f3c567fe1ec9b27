"""Selection on params sharded over a mesh, without gathering them: ``shard_map`` and a sharded backend.

Each device runs the core's one algorithm (``run_groups``) on its own blocks. Only the two
cross-device primitives differ from ``JaxBackend``:

- ``reduce``: ``lax.psum`` of the per-tensor values (histograms of 2**11 counts, or counts),
  each tensor's value weighted by 1 on the first replica of its block only, so a replicated
  leaf (or a leaf sharded over fewer mesh axes) is counted once;
- ``tally``: one ``lax.all_gather`` of the per-tensor counts and block indices (2 integers per
  tensor per device), then masked sums: the total, and the part on earlier blocks.

Supported layouts keep the canonical order cheap: every prunable leaf is a ``NamedSharding`` on
one mesh, sharded along dim 0 only (over one or more mesh axes, evenly) or replicated. Then a
device's block is a contiguous run of the leaf's C order, and the block index (``axis_index``
of its dim-0 axes) orders blocks as the global tensor does; ties go to earlier blocks first, so
the masks are bit-identical to the unsharded run. Other layouts are refused (``layout_of``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fggp_core.backend import NUMPY
from fggp_core.errors import ConfigError
from fggp_core.selection import random_scores

from .backend import JaxBackend, count_dtype

__all__ = ["ShardLayout", "layout_of", "ShardedJax", "shard_run", "random_blocks", "collectives"]

_ALLOWED = (
    "fggp selects on sharded params without gathering them when every prunable leaf is a "
    "jax.sharding.NamedSharding on one mesh, sharded along dim 0 only "
    "(e.g. P('data') or P(('data', 'model'))) with dim 0 divisible by its shard count, or replicated "
    "(P()); reshard the leaf along dim 0 or leave it out of prunable"
)


@jax.tree_util.register_static
@dataclass(frozen=True)
class ShardLayout:
    """How the prunable leaves lie on ``mesh``: per leaf (canonical order), the mesh axes its
    dim 0 is split over (``()``: replicated). Static (hashable) pytree data, no leaves."""

    mesh: Mesh
    axes: tuple[tuple[str, ...], ...]

    def spec(self, i: int) -> P:
        return P(self.axes[i]) if self.axes[i] else P()


def _dim0_axes(spec: P) -> tuple[Any, tuple[Any, ...]]:
    parts = tuple(spec)
    first = parts[0] if parts else None
    axes = () if first is None else (first,) if isinstance(first, str) else tuple(first)
    return axes, parts[1:]


def layout_of(names: Sequence[str], arrays: Sequence[Any]) -> ShardLayout | None:
    """The layout of concrete ``arrays`` (prunable leaves, canonical order), or None when they are
    not spread over more than one device (or are tracers: layout unknown; the unsharded path).

    Raises ``ConfigError`` naming the leaf and its sharding for a layout ``shard_run`` cannot
    select on exactly without gathering (sharded along another dim, uneven, mixed meshes)."""
    shardings = [getattr(a, "sharding", None) for a in arrays]
    if any(isinstance(a, jax.core.Tracer) for a in arrays) or any(s is None for s in shardings):
        return None
    if len(set().union(*(s.device_set for s in shardings))) <= 1:
        return None
    mesh, axes = None, []
    for name, a, s in zip(names, arrays, shardings):
        if not isinstance(s, NamedSharding):
            raise ConfigError(f"sharding of {name}", s, _ALLOWED)
        if mesh is None:
            mesh = s.mesh
        elif s.mesh != mesh:
            raise ConfigError(f"sharding of {name}", s, f"{_ALLOWED} (this leaf is on another mesh: {s.mesh})")
        dim0, rest = _dim0_axes(s.spec)
        if any(r is not None for r in rest):
            raise ConfigError(f"sharding of {name}", s.spec, _ALLOWED)
        blocks = math.prod(mesh.shape[x] for x in dim0)
        if dim0 and jnp.shape(a)[0] % blocks:
            raise ConfigError(f"sharding of {name}", s.spec, f"{_ALLOWED}; dim 0 of {jnp.shape(a)} is uneven")
        axes.append(tuple(dim0))
    return ShardLayout(mesh, tuple(axes))  # type: ignore[arg-type]


class ShardedJax(JaxBackend):
    """``JaxBackend`` inside ``shard_map``: arrays are this device's blocks. ``reduce`` and
    ``tally`` talk across the mesh; ``shape`` of a weight block is the global shape (the core
    sizes reserves and the random draw by it)."""

    def __init__(self, layout: ShardLayout, blocks: Sequence[Any]) -> None:
        self.layout = layout
        self._blocks = list(blocks)  # kept alive, so their ids stay theirs
        self._index = {id(b): i for i, b in enumerate(self._blocks)}
        self._names = tuple(layout.mesh.axis_names)

    def index_of(self, block: Any) -> int | None:
        """The canonical index of a weight block given to the constructor (None for others)."""
        return self._index.get(id(block))

    def blocks(self, i: int) -> int:
        return math.prod(self.layout.mesh.shape[x] for x in self.layout.axes[i])

    def shape(self, x: Any) -> tuple[int, ...]:
        shape, i = tuple(jnp.shape(x)), self.index_of(x)
        return shape if i is None else (shape[0] * self.blocks(i), *shape[1:])

    def block(self, i: int) -> Any:
        """This device's block index of tensor ``i`` (its place in the tensor's C order)."""
        return lax.axis_index(self.layout.axes[i]) if self.layout.axes[i] else jnp.asarray(0, jnp.int32)

    def _used(self, tensors: Sequence[int]) -> tuple[str, ...]:
        used = {x for t in tensors for x in self.layout.axes[t]}
        return tuple(x for x in self._names if x in used)

    def _first(self, t: int, over: tuple[str, ...]) -> Any:
        """True on the first replica of this device's block of ``t`` among the devices of ``over``."""
        flag = jnp.asarray(True)
        for x in over:
            if x not in self.layout.axes[t]:
                flag = flag & (lax.axis_index(x) == 0)
        return flag

    def reduce(self, values: Sequence[Any], tensors: Sequence[int]) -> Any:
        used = self._used(tensors)
        if not used:
            return super().reduce(values, tensors)
        parts = [jnp.where(self._first(t, used), v, jnp.zeros_like(v)) for v, t in zip(values, tensors)]
        return lax.psum(super().reduce(parts, tensors), used)

    def tally(self, counts: Sequence[Any], tensors: Sequence[int]) -> tuple[list[Any], list[Any]]:
        used = self._used(tensors)
        if not used:
            return super().tally(counts, tensors)
        dtype = count_dtype()
        mine = jnp.stack([jnp.where(self._first(t, used), c, 0).astype(dtype) for c, t in zip(counts, tensors)])
        block = jnp.stack([self.block(t).astype(dtype) for t in tensors])
        every = lax.all_gather(jnp.concatenate([mine, block]), used)  # [devices, 2 * tensors]: tiny
        n = len(tensors)
        c, b = every[:, :n], every[:, n:]
        totals = jnp.sum(c, axis=0)
        earlier = jnp.sum(jnp.where(b < block[None, :], c, 0), axis=0)
        return [totals[i] for i in range(n)], [earlier[i] for i in range(n)]


@functools.lru_cache(maxsize=2)
def _draw_keys(seed: int, step: int, n: int) -> np.ndarray:
    """The whole host draw as keys, computed once per event for all devices' callbacks."""
    return NUMPY.host_keys(random_scores(seed, step, n), None)


def random_blocks(be: ShardedJax, seed: int, step: Any):
    """The "random" stage: this device's blocks of the core's host draw ``random_scores(seed, step, n)``
    (n global), cut per tensor; the host computes the draw, the device receives only its blocks."""

    def keys(sizes: list[int], like: Sequence[Any]) -> list[jax.Array]:
        total, starts = sum(sizes), np.cumsum([0, *sizes[:-1]])
        local = [math.prod(jnp.shape(x)) for x in like]
        offsets = jnp.stack([
            int(s) + be.block(be.index_of(x)).astype(count_dtype()) * n for s, n, x in zip(starts, local, like)
        ])

        def host(t: Any, offsets: Any) -> np.ndarray:
            draw = _draw_keys(seed, int(t), total)
            return np.concatenate([draw[int(o) : int(o) + n] for o, n in zip(offsets, local)])

        out = jax.pure_callback(host, jax.ShapeDtypeStruct((sum(local),), jnp.int32), step, offsets)
        cuts = np.cumsum([0, *local])
        return [out[a:b] for a, b in zip(cuts[:-1], cuts[1:])]

    return keys


def shard_run(layout: ShardLayout, run: Any, weights, grads, masks, ks, rate, step) -> tuple[list[jax.Array], Any]:
    """``run(be, weights, grads, masks, ks, rate, step) -> (masks, status)`` inside
    ``jax.shard_map`` over ``layout.mesh``: every array a device sees is its own block; the masks
    come back with the params' sharding, the status replicated (every device computes the same)."""
    specs = [layout.spec(i) for i in range(len(weights))]
    static_rate = isinstance(rate, (int, float))  # a Python float stays a constant (float64 exact)

    def body(w, g, m, ks, rate_in, step):
        return run(ShardedJax(layout, w), w, g, m, ks, rate if static_rate else rate_in, step)

    args = (list(weights), None if grads is None else list(grads), list(masks), ks,
            jnp.zeros(()) if static_rate else rate, step)
    in_specs = (specs, None if grads is None else specs, specs, P(), P(), P())
    out_specs = (specs, P())
    return _shard_map(body, layout.mesh, in_specs, out_specs)(*args)


def _shard_map(body: Any, mesh: Mesh, in_specs: Any, out_specs: Any) -> Any:
    """``jax.shard_map`` (JAX >= 0.7) or its experimental form; the status is the same on every
    device by construction (sums over the mesh), which replication checking cannot prove."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map

    return shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


_OPS = "all-gather|all-to-all|collective-permute|all-reduce|reduce-scatter"
_COLLECTIVE = re.compile(rf"=\s*(.+?)\s+({_OPS})(?:-start)?\(")
_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16)\[([\d,]*)\]")


def collectives(hlo: str) -> list[tuple[str, int, int]]:
    """(op, elements, bytes) of every collective in compiled HLO text (``jit(f).lower(...).compile().as_text()``);
    an async pair counts once (its ``-start``)."""
    out = []
    for line in hlo.splitlines():
        found = _COLLECTIVE.search(line)
        if found is None:
            continue
        elements = nbytes = 0
        for dtype, dims in _ARRAY.findall(found.group(1)):
            n = math.prod(int(d) for d in dims.split(",") if d)
            elements += n
            nbytes += n * (1 if dtype == "pred" else 2 if dtype == "bf16" else int(dtype[1:]) // 8)
        out.append((found.group(2), elements, nbytes))
    return out
