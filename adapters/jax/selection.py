"""Selection on JAX arrays: the core's one algorithm, eagerly (``select``) or compiled (``select_jit``).

``select`` is ``fggp_core.select`` with the JAX backend. ``select_jit`` checks on the host
exactly as the core does, then runs ``run_traced`` as one compiled program (``k``, the rate
and the step traced: one compilation per shapes and method) and raises from its status with
the core's ``raise_status``. ``run_traced`` is also what ``wrap``'s event branch runs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import fggp_core
from fggp_core.backend import INF_KEY, NUMPY, score_dtype
from fggp_core.methods import Method
from fggp_core.selection import NONFINITE, OK, Status, check_problem, raise_failure, random_scores, run_groups

from .backend import (
    JAX,
    JaxBackend,
    _as_float,
    _keys,
    count_dtype,
    materialize,
    materialize_array,
    opaque_ints,
    rate_bits,
)
from .sharded import ShardedJax, ShardLayout, layout_of, random_blocks, shard_run

__all__ = ["select", "select_jit", "run_traced"]


def _arrays(tree: Mapping[str, Any] | None) -> dict[str, jax.Array] | None:
    return None if tree is None else {n: jnp.asarray(a) for n, a in tree.items()}


def select(
    method: Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
) -> dict[str, jax.Array]:
    """``fggp_core.select(..., backend=JAX)``: same arguments, result and errors as the core.

    Inputs go through ``jnp.asarray`` (float64 becomes float32 unless ``jax_enable_x64``);
    the masks come back on the arrays' own devices and shardings. Weights sharded over a mesh
    run ``select_jit``'s compiled program, each device on its own blocks (``fggp.jax.sharded``);
    a layout it cannot handle raises ``ConfigError`` naming the leaf.
    """
    if isinstance(weights, Mapping) and layout_of(list(weights), list(weights.values())) is not None:
        return select_jit(method, weights, grads, masks, k, scope=scope, step=step)
    return fggp_core.select(
        method, _arrays(weights), _arrays(grads), _arrays(masks), k, scope=scope, step=step, backend=JAX  # type: ignore[arg-type]
    )


def _random_keys(seed: int, step: Any):
    """The "random" stage under jit: the core's host draw ``random_scores(seed, step, n)``,
    fetched with ``jax.pure_callback`` and cut per tensor (int32 keys of float32 scores)."""

    def keys(sizes: list[int], like: Any = None) -> list[jax.Array]:
        n = sum(sizes)
        draw = jax.pure_callback(
            lambda t: NUMPY.host_keys(random_scores(seed, int(t), n), None),
            jax.ShapeDtypeStruct((n,), jnp.int32),
            step,
            vmap_method="sequential",  # under jax.vmap: one host draw per step of the batch
        )
        starts = np.cumsum([0, *sizes])
        return [draw[a:b] for a, b in zip(starts[:-1], starts[1:])]

    return keys


def run_traced(
    method: Method,
    scope: str,
    weights: Sequence[jax.Array],
    grads: Sequence[jax.Array] | None,
    masks: Sequence[jax.Array],
    ks: jax.Array,
    rate: Any,
    step: jax.Array,
    layout: ShardLayout | None = None,
) -> tuple[list[jax.Array], Status]:
    """New masks (shaped like ``masks``) and the status; traceable, never raises.

    Lists are per tensor in canonical order. ``ks``: counts, one per selection group (one
    under global scope, one per tensor under layerwise), each in ``[0, active]``. ``rate``:
    the method's float64 rate at ``step``, as a float or ``rate_bits`` (uint32 [2]).
    ``step``: the event's step (for ``Random``). On a non-OK status the masks are ``masks``.
    ``layout``: the params' ``ShardLayout`` (``layout_of``): each device then selects on its own
    blocks inside ``shard_map`` (same masks, no gathering); None: one program on whole arrays.
    """
    groups = [list(range(len(weights)))] if scope == "global" else [[i] for i in range(len(weights))]
    seed = getattr(method, "seed", 0)

    def run(be, weights, grads, masks, ks, rate, step):
        ks = jnp.asarray(ks).astype(count_dtype())
        random = random_blocks(be, seed, step) if isinstance(be, ShardedJax) else _random_keys(seed, step)
        new, status = run_groups(
            be, method, list(weights), None if grads is None else list(grads), list(masks),
            [(g, ks[i]) for i, g in enumerate(groups)], rate=rate, step=step, random=random,
        )
        return [JAX.unflat(x, jnp.shape(m)) for x, m in zip(new, masks)], status

    if flat_path(method, scope, len(weights), layout):
        return _run_flat(method, weights, grads, masks, ks, rate, step)
    if layout is None:
        new, status = run(JAX, weights, grads, masks, ks, rate, step)
    else:
        new, status = shard_run(layout, run, weights, grads, masks, ks, rate, step)
        status = Status(*status)
    ok = materialize(status.code)[0] == OK  # read by every leaf: computed once
    return [jnp.where(ok, a, b) for a, b in zip(new, masks)], status


FLAT_MIN_LEAVES = 32
"""From this many leaves a global selection runs on one concatenated buffer (``_run_flat``): the
program no longer grows with the leaves (compile time), at more event memory per entry."""


def flat_path(method: Method, scope: str, leaves: int, layout: ShardLayout | None) -> bool:
    """Whether ``run_traced`` selects on one concatenated buffer: global scope, unsharded, at
    least ``FLAT_MIN_LEAVES`` leaves, no stage that works per tensor (a ``GlobalMP`` reserve,
    the "gupta" rule) and no per-tensor regrowth (GraNet)."""
    plan = method.plan()
    return (
        layout is None and scope == "global" and leaves >= FLAT_MIN_LEAVES
        and not method.regrows and not any(s.per_tensor or s.size == "gupta" for s in plan)
    )


def flat_concat(parts: Sequence[jax.Array]) -> jax.Array:
    """One flat buffer (a single leaf is only reshaped: no copy)."""
    if len(parts) == 1:
        return jnp.reshape(parts[0], -1)
    return jnp.concatenate([jnp.reshape(x, -1) for x in parts])


class _Leaves(tuple):
    """Leaves that the flat selection reads as one tensor: their concatenation in canonical
    order, then one inactive 0.0 entry (the "tail", see ``_FlatJax``)."""

    def flat(self, score: str, tail: Any) -> jax.Array:
        """The concatenation as floats of ``score`` dtype, ``tail`` (a 1-entry array) last."""
        return jnp.concatenate([*(_as_float(x, score) for x in self), tail.astype(score)])


class _LeafKeys(NamedTuple):
    """A stage's keys, concatenated only when ``_FlatJax`` reads them together with a mask, and
    after it and ``after`` (the previous stage's keys, if any: the count of non-finite scores
    reads the keys with the first mask, known from the start)."""

    leaves: _Leaves
    others: _Leaves | None
    score: str
    made: dict  # id of the mask -> the keys built for it (one concatenation per stage and mask)
    after: Any = None

    def along(self, among: jax.Array) -> jax.Array:
        if id(among) not in self.made:
            # The tail is 0.0 read from ``among`` through a conditional (opaque to XLA): so the
            # concatenation waits for ``among`` (the previous stage's result). Else XLA
            # concatenates every stage's leaves at the start, and a stage's floats and keys
            # live alongside the previous stage's keys (8 bytes per entry more).
            seed = jnp.sum(among[:1], dtype=jnp.int32)
            if self.after is not None:
                seed = seed + jnp.sum(self.after[:1], dtype=jnp.int32)
            tail = jnp.zeros(1, jnp.int32) + opaque_ints([0], seed)[0]
            x = self.leaves.flat(self.score, tail)
            y = None if self.others is None else self.others.flat(self.score, tail)
            self.made[id(among)] = (among, _keys(x, y, self.score))  # among kept: its id stays its own
        return self.made[id(among)][1]


class _FlatJax(JaxBackend):
    """``JAX`` where a weight or gradient may be ``_Leaves`` (one tensor of their total size
    plus one): a stage's leaves are concatenated only when its keys are read with a mask (see
    ``_LeafKeys``), so at most one stage's floats and keys live at a time (XLA CPU materializes
    a concatenation of more than a couple of operands: 4 bytes per entry each). The masks'
    concatenation ends with an inactive entry, so the tail is never counted nor selected."""

    def shape(self, x: Any) -> tuple[int, ...]:
        if isinstance(x, _Leaves):
            return (1 + sum(int(np.prod(jnp.shape(t), dtype=np.int64)) for t in x),)
        return super().shape(x)

    def dtype_name(self, x: Any) -> str:
        if isinstance(x, _Leaves):
            return score_dtype([super(_FlatJax, self).dtype_name(t) for t in x])
        return super().dtype_name(x)

    def keys(self, t: Any, other: Any | None, score: str, out: Any = None) -> Any:
        if isinstance(t, _Leaves):
            return _LeafKeys(t, other, score, {}, out)
        return super().keys(t, other, score, out)

    def nonfinite(self, keys: Any, among: jax.Array) -> jax.Array:
        return super().nonfinite(keys.along(among) if isinstance(keys, _LeafKeys) else keys, among)

    def exclude(self, keys: Any, among: jax.Array) -> jax.Array:
        return super().exclude(keys.along(among) if isinstance(keys, _LeafKeys) else keys, among)


_FLAT = _FlatJax()


def _run_flat(method, weights, grads, masks, ks, rate, step) -> tuple[list[jax.Array], Status]:
    """Global selection as one tensor: the leaves concatenated in canonical order (so canonical
    indices, ties and the Random draw are those of the per-leaf selection), then split back.
    The selection's part of the program does not grow with the number of leaves (only the
    concatenations and the split do), which keeps compile time down at many leaves. The
    status's tensor and count of a non-finite score are recomputed per leaf."""
    sizes = [int(np.prod(jnp.shape(w), dtype=np.int64)) for w in weights]
    starts = np.cumsum([0, *sizes])  # each leaf's first entry in the flat buffers, then the total
    w = _Leaves(weights)
    g = None if grads is None else _Leaves(grads)
    m = flat_concat([*masks, jnp.zeros(1, bool)])  # the tail: never active
    ks = jnp.asarray(ks).astype(count_dtype())
    new, status = run_groups(
        _FLAT, method, [w], None if g is None else [g], [m], [([0], ks[0])], rate=rate, step=step,
        random=_random_keys(getattr(method, "seed", 0), step),
    )
    if len(weights) > 1:
        status = _leaf_status(method, status, w, g, m, starts, new[0])
    # The old masks on a failure, written once, then split (XLA would otherwise copy the
    # selection's last elementwise code into every leaf's slice).
    flat = materialize_array(jnp.where(status.code == OK, new[0], m), status.code)
    # Each leaf's slice starts at a run-time offset: slices of the same size are then one
    # kernel to XLA, compiled once (a constant offset makes each a kernel of its own).
    at = opaque_ints(starts[:-1], ks[0])
    return [jnp.reshape(jax.lax.dynamic_slice(flat, (a,), (n,)), jnp.shape(x))
            for a, n, x in zip(at, sizes, masks)], status


def _leaf_status(method, status, w, g, m, starts, after) -> Status:
    """A non-finite status names the first leaf with a non-finite active score of the failed
    stage and counts that leaf's entries (as the per-leaf selection does). Computed only on
    that failure (a ``lax.cond`` inside the event) from the leaves ``w`` and ``g`` (``_Leaves``;
    None without gradients) and the flat mask ``m`` the selection read; ``after``: the
    selection's result, which it waits for (else XLA runs it as soon as the status is known,
    while the selection's keys still live). The failed stage's keys are chosen on device (a
    switch: only that score's leaves are concatenated), and every step works on whole buffers
    (no per-leaf kernels: compile time). ``starts``: each leaf's first entry in the flat
    buffers, then their length."""
    plan = method.plan()
    score = _FLAT.dtype_name(w)
    if all(stage.score not in ("magnitude", "gradient", "taylor") for stage in plan):
        return status  # Random: no score can be non-finite

    def locate(operands):
        stage_index, w, g, m, after = operands
        w, g = _Leaves(w), None if g is None else _Leaves(g)

        def nonfinite(stage):
            reads = {"magnitude": (w, None), "gradient": (g, None), "taylor": (w, g)}.get(stage.score)
            if reads is None:  # random and regrowth stages never report a non-finite score
                return lambda: jnp.zeros(m.shape, bool)
            return lambda: _LeafKeys(*reads, score, {}).along(after) >= INF_KEY[score]

        branches = [nonfinite(stage) for stage in plan]
        bad = jax.lax.switch(jnp.clip(stage_index, 0, len(plan) - 1), branches) & m
        leaf = jnp.searchsorted(jnp.asarray(starts[1:]), jnp.argmax(bad), side="right")
        bounds = jnp.asarray(starts)
        at = jnp.arange(bad.shape[0])
        count = JAX.count(bad & (at >= bounds[leaf]) & (at < bounds[leaf + 1]))  # block-wise: no int per entry
        return leaf.astype(count_dtype()), count

    def keep(operands):
        return status.tensor.astype(count_dtype()), status.count.astype(count_dtype())

    operands = (status.stage, list(w), None if g is None else list(g), m, after)
    tensor, count = jax.lax.cond(status.code == NONFINITE, locate, keep, operands)
    return status._replace(tensor=tensor, count=count)


@functools.lru_cache(maxsize=32)
def _compiled(method_config: str, scope: str, layout: ShardLayout | None = None) -> Any:
    method = fggp_core.method_from_config(json.loads(method_config))
    return jax.jit(functools.partial(run_traced, method, scope, layout=layout))


def select_jit(
    method: Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
) -> dict[str, jax.Array]:
    """``select`` as one compiled program: the same result and errors as ``fggp_core.select``.

    The checks run on the host first (the core's ``validate``, ``groups_of`` and ``k <=
    active``); ``k``, the rate and ``step`` are traced, so one compilation serves every count
    and step of the same shapes and method.
    """
    weights, grads, masks = _arrays(weights), _arrays(grads), _arrays(masks)
    names, groups, rate = check_problem(JAX, method, weights, grads, masks, k, scope, step)  # type: ignore[arg-type]
    w = [weights[n] for n in names]  # type: ignore[index]
    run = _compiled(json.dumps(method.to_config(), sort_keys=True), scope, layout_of(names, w))
    g = None if grads is None or not method.needs_grads else [grads[n] for n in names]
    ks = np.asarray([count for _, count in groups], np.dtype(count_dtype()))
    new, status = run(w, g, [masks[n] for n in names], ks, rate_bits(rate), np.int32(step or 0))  # type: ignore[index]
    raise_failure(status, names, method, k, scope)
    return dict(zip(names, new))
