"""``wrap``: an optax transformation that prunes inside ``jax.jit``; the masks live in its state.

One ``update`` (events included) is one traceable function with static shapes:

1. gradients of pruned entries are zeroed, then the inner transformation updates;
2. the step counter (completed optimizer steps) advances; if it is an event step, the event
   runs in a ``lax.cond`` branch. The core's ``event_table`` (host float64 math, embedded as
   constants) gives each event's target pruned count per selection group and the method's
   rate; ``pruned`` is counted on device (integers, exact) and ``k = max(0, target - pruned)``.
   Selection is the core's ``run_groups`` with the JAX backend (``run_traced``, the very code
   ``select_jit`` compiles) on the weights as updated by the inner transformation
   (``params + inner updates``) and this step's gradients;
3. updates are ``inner update`` where kept and ``-params`` where pruned, so pruned params are
   exactly 0.0 after ``optax.apply_updates``. Inner state subtrees shaped like params (momentum,
   Adam moments) are zeroed where pruned *before* the inner step reads them (step 1), fused
   into it: nothing pruned is ever revived, and the step between events costs no extra pass
   (moments of entries pruned at an event read zero from the next update on).

The event branch recomputes the inner step from the step's inputs (instead of taking its
result as an operand), so between events the inner update, the masking and
``apply_updates`` stay one fused, asynchronous XLA program with no host callback.

An event the core would refuse (a NaN/inf score among active entries, an unreachable
GlobalMP target) cannot raise under jit: it is skipped (masks unchanged), counted in the
state, and ``check(opt_state)`` raises the core's error naming the leaf path. Called eagerly
(no jit), ``update`` raises at once, or warns and skips with ``skip_nonfinite=True``.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fggp_core.distribution import SparseStart, random_masks
from fggp_core.errors import ConfigError, InputMismatchError
from fggp_core.methods import Method
from fggp_core.pruner import EventReport, check_config, event_table, targets
from fggp_core.schedule import Schedule
from fggp_core.selection import OK, check_counts, raise_status

from .backend import JAX, count_dtype, materialize, rate_bits
from .selection import flat_concat, flat_path, run_traced
from .sharded import ShardLayout, layout_of

__all__ = ["PruneState", "MethodConfig", "wrap", "leaf_names", "default_prunable", "migrate_state", "is_event"]

Prunable = Callable[[str, Any], bool] | Collection[str] | Any | None
MISSED = 3  # last_skip code: update(..., fggp_event=False) at an event step
# Inner-state arrays of at least this many entries are read by the inner update after the event's
# conditional (see ``update``), so that a donated state is updated in place.
IN_PLACE_MIN_SIZE = 1 << 16


@jax.tree_util.register_static
@dataclass(frozen=True)
class MethodConfig:
    """The wrapped method's config (JSON), held in the state as static pytree data (no leaves),
    so ``check(opt_state)`` can name the failed stage's score as the core does."""

    json: str

    def method(self) -> Method:
        from fggp_core.methods import method_from_config

        return method_from_config(json.loads(self.json))


class PruneState(NamedTuple):
    """``wrap``'s state (a pytree).

    ``masks``: shaped like params, a bool array (True = kept) per prunable leaf, ``None`` for
    the others. ``count``: completed optimizer steps (int32). ``skipped``: events skipped
    (int32). ``last_skip``: the latest skipped event as ``[step, code, tensor, count, stage,
    k]`` in the count type (int32, int64 under x64): code 1 non-finite score, 2 unreachable
    target; ``tensor`` indexes the prunable leaves; ``stage`` the method's ``plan()``; ``k``
    the failed group's count. ``method``: static, no leaves (None in a state saved by fggp
    0.1.0, whose ``last_skip`` had 5 entries: ``migrate_state`` upgrades it). ``layout``: static,
    the prunable leaves' ``ShardLayout`` seen by ``init`` when they are sharded over a mesh (events
    then select per device, inside ``shard_map``), else None.
    """

    inner: Any
    count: jax.Array
    masks: Any
    skipped: jax.Array
    last_skip: jax.Array
    method: MethodConfig | None = None
    layout: ShardLayout | None = None


def _is_none(x: Any) -> bool:
    return x is None


def leaf_names(params: Any) -> list[str]:
    """The path of every leaf of ``params`` (``jax.tree_util.keystr``), in flatten order."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _key_name(key: Any) -> Any:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return getattr(key, attribute)
    return key


def default_prunable(path: tuple, leaf: Any) -> bool:
    """The default set: floating leaves with ``ndim >= 2`` (dense and conv kernels), except
    those whose last path key is ``"embedding"`` (``flax`` ``Embed``; a trailing NNX ``.value``
    is skipped). ``path`` is a key path as from ``jax.tree_util.tree_flatten_with_path``."""
    keys = [_key_name(k) for k in path]
    if keys and keys[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        keys = keys[:-1]
    floating = jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    return bool(jnp.ndim(leaf) >= 2 and floating and not (keys and keys[-1] == "embedding"))


_ALLOWED = (
    "None (floating leaves with ndim >= 2 except embeddings), a list of leaf paths "
    "(jax.tree_util.keystr), a predicate (path: str, leaf) -> bool, or a pytree of bools like params"
)


def _prunable_flags(params: Any, prunable: Prunable) -> list[bool]:
    with_paths = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [jax.tree_util.keystr(p) for p, _ in with_paths]
    if prunable is None:
        return [default_prunable(p, x) for p, x in with_paths]
    if callable(prunable):
        return [bool(prunable(p, x)) for p, (_, x) in zip(paths, with_paths)]
    if isinstance(prunable, (list, tuple, set, frozenset)) and all(isinstance(n, str) for n in prunable):
        unknown = sorted(set(prunable) - set(paths))
        if unknown:
            raise ConfigError("prunable", unknown, f"names must be leaf paths of params: {paths}")
        return [p in prunable for p in paths]
    flags = jax.tree.leaves(prunable)
    if not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise ConfigError("prunable", prunable, f"must be {_ALLOWED}")
    if jax.tree.structure(prunable) != jax.tree.structure(params):
        raise InputMismatchError(
            f"prunable's pytree structure {jax.tree.structure(prunable)} differs from params' "
            f"{jax.tree.structure(params)}"
        )
    return [bool(f) for f in flags]


def _tables(
    method: Method, schedule: Schedule, scope: str, distribution: str, allow_empty: bool, shapes: tuple
) -> tuple:
    """The core's ``event_table`` as device constants: steps (int32, the step counter's type),
    targets (count type, [E, G]) and rates as ``rate_bits`` (uint32 [E, 2])."""
    table = event_table(method, schedule, scope, distribution, dict(shapes), allow_empty)
    steps = np.minimum(table.steps, np.iinfo(np.int32).max).astype(np.int32)  # later steps never come
    return steps, table.targets.astype(np.dtype(count_dtype())), rate_bits(table.rates)


def wrap(
    inner: optax.GradientTransformation,
    method: Method,
    schedule: Schedule,
    *,
    scope: str = "global",
    prunable: Prunable = None,
    sparse_start: SparseStart | None = None,
    distribution: str = "uniform",
    skip_nonfinite: bool = False,
    on_event: Callable[[EventReport], Any] | None = None,
    allow_empty: bool = False,
) -> optax.GradientTransformation:
    """Prune params gradually while ``inner`` optimizes them; jittable, events included.

    ``method``: ``FGGP()``, ``Magnitude()``, ... ``schedule``: e.g. ``PolynomialSchedule(...)``;
    its steps count completed optimizer steps (``update`` calls; put ``wrap`` inside
    ``optax.MultiSteps`` so accumulation steps do not count). ``scope``: "global" or
    "layerwise" (per-leaf targets by ``distribution``, "uniform" or "erk"). ``prunable``: None
    (floating leaves with ``ndim >= 2`` except ``embedding`` leaves: dense and conv kernels), a
    list of leaf paths (``jax.tree_util.keystr``), a predicate ``(path: str, leaf) -> bool`` or a
    pytree of bools like params. ``sparse_start``: a ``SparseStart`` drawn on the host at
    ``init`` (call ``apply_masks`` on the initial params). ``skip_nonfinite``: an eager
    ``update`` warns and skips instead of raising (under jit events are always skipped and
    flagged; see ``check``). ``update`` needs ``params``. Keep ``wrap`` outermost (a later
    transformation could move pruned params off zero).

    ``on_event``: called on the host with each event's ``EventReport`` through
    ``jax.debug.callback`` placed in the event branch only, so steps between events stay one
    asynchronous program with no host call (None: nothing is traced). Under jit the callback
    runs asynchronously and ``seconds`` is NaN (a device program cannot time itself); skipped
    events arrive with ``skipped=True``. Without ``on_event``, read ``sparsity(opt_state)`` /
    ``layer_report(opt_state)`` at your logging cadence.
    """
    check_config(method, schedule, scope, distribution, sparse_start)
    if on_event is not None and not callable(on_event):
        raise ConfigError("on_event", on_event, "must be None or a callable taking an EventReport")
    if isinstance(inner, optax.MultiSteps) or not hasattr(inner, "update"):
        raise ConfigError(
            "inner", inner,
            "must be an optax.GradientTransformation; for gradient accumulation use "
            "optax.MultiSteps(fggp.jax.wrap(inner, ...), k) so events count real optimizer steps",
        )
    inner = optax.with_extra_args_support(inner)  # value=, value_fn=, ... reach the inner transformation
    config = MethodConfig(json.dumps(method.to_config(), sort_keys=True))
    if not isinstance(allow_empty, bool):
        raise ConfigError("allow_empty", allow_empty, "must be True or False (layerwise: may a leaf be emptied)")
    tables = functools.lru_cache(maxsize=8)(
        functools.partial(_tables, method, schedule, scope, distribution, allow_empty)
    )

    def init(params: Any) -> PruneState:
        names, leaves = leaf_names(params), jax.tree.leaves(params)
        chosen = [i for i, f in enumerate(_prunable_flags(params, prunable)) if f]
        if not chosen:
            raise ConfigError("prunable", prunable, f"selects no leaf of params (leaves: {names})")
        for i in chosen:
            dtype = jnp.result_type(leaves[i])
            if not jnp.issubdtype(dtype, jnp.floating):
                raise InputMismatchError(
                    f"prunable leaf {names[i]} has dtype {dtype}; only floating leaves can be pruned"
                )
        check_counts(JAX, [math.prod(jnp.shape(leaves[i])) for i in chosen])  # int32 counts without x64
        layout = layout_of([names[i] for i in chosen], [leaves[i] for i in chosen])  # refuses what it cannot do
        host = {}
        if sparse_start is not None:
            host = random_masks({names[i]: tuple(jnp.shape(leaves[i])) for i in chosen}, sparse_start)
        mask_leaves: list[Any] = [None] * len(leaves)
        for i in chosen:
            ones = jnp.ones_like(leaves[i], dtype=bool)  # on the leaf's devices, with its sharding
            mask_leaves[i] = ones if names[i] not in host else ones & jnp.asarray(host[names[i]])
        info = jnp.zeros(5, count_dtype())
        if schedule.is_event(0):  # e.g. OneShotSchedule(s)'s default step=0: the event before the first update
            shapes = {names[i]: tuple(jnp.shape(leaves[i])) for i in chosen}
            new, info = _event_at_zero(
                method, schedule, scope, distribution, allow_empty, shapes, [leaves[i] for i in chosen],
                [mask_leaves[i] for i in chosen], {n: int(m.size - m.sum()) for n, m in host.items()}, layout,
            )
            for j, i in enumerate(chosen):
                mask_leaves[i] = new[j]
        return PruneState(
            inner=inner.init(params),
            count=jnp.zeros((), jnp.int32),
            masks=jax.tree.structure(params).unflatten(mask_leaves),
            skipped=(info[0] != OK).astype(jnp.int32),
            last_skip=jnp.concatenate([jnp.zeros(1, info.dtype), info]).astype(count_dtype()),
            method=config,
            layout=layout,
        )

    def update(
        updates: Any, state: PruneState, params: Any = None, *, fggp_event: bool | None = None, **extra_args: Any
    ) -> tuple[Any, PruneState]:
        if fggp_event is not None and not isinstance(fggp_event, bool):
            raise ConfigError(
                "fggp_event", fggp_event,
                "must be None (decided on device) or a Python bool from fggp.jax.is_event(schedule, step) on the host",
            )
        if params is None:
            raise ConfigError("params", None, "fggp.jax.wrap needs params: call tx.update(grads, opt_state, params)")
        if state.method is None or jnp.shape(state.last_skip) != (6,):
            raise ConfigError(
                "opt_state", "a PruneState saved by fggp 0.1.0",
                "upgrade it once with opt_state = fggp.jax.migrate_state(opt_state, method) (same masks and step)",
            )
        treedef, mask_leaves, chosen = _aligned(params, state.masks)
        p_leaves = treedef.flatten_up_to(params)
        g_leaves = treedef.flatten_up_to(updates)

        def inner_step(g_leaves: list, inner_state: Any, params: Any, mask_leaves: list) -> tuple[list, Any]:
            zero = [None if m is None else jnp.zeros((), g.dtype) for g, m in zip(g_leaves, mask_leaves)]
            masked = [g if m is None else jnp.where(m, g, z) for g, m, z in zip(g_leaves, mask_leaves, zero)]
            # Inner state shaped like params (momentum, Adam moments) is zeroed where pruned before
            # the inner step reads it: fused into the step, so nothing pruned is ever revived.
            inner_in = _mask_params_like(inner_state, treedef, mask_leaves)
            inner_updates, inner_state = inner.update(treedef.unflatten(masked), inner_in, params, **extra_args)
            return treedef.flatten_up_to(inner_updates), inner_state

        traced = any(isinstance(x, jax.core.Tracer) for x in g_leaves) and all(
            isinstance(x, jax.Array) for x in jax.tree.leaves(state.inner)
        )  # under a trace, with array state (a Python scalar in the state stays static without jit)
        if traced:
            # Traced once and emitted once: the event branch calls the same function (compile time).
            inner_step = jax.jit(inner_step)
        step_args = (g_leaves, state.inner, params, mask_leaves)

        def updated_weights() -> list[jax.Array]:
            # Run inside the event branch: the same inner step again, from this step's inputs,
            # so the step between events keeps the inner update fused (no buffer for it).
            # Every output kept (the barrier), so JAX does not prune this call into a second function.
            u = jax.lax.optimization_barrier(inner_step(*step_args))[0]  # rounded as apply_updates sees it
            return [(p_leaves[i] + u[i]).astype(p_leaves[i].dtype) for i in chosen]  # = optax.apply_updates

        count = state.count + 1
        all_names = leaf_names(params)
        names = [all_names[i] for i in chosen]
        steps, targets, rates = tables(tuple((n, tuple(jnp.shape(p_leaves[i]))) for n, i in zip(names, chosen)))
        p, g, m = ([leaves[i] for i in chosen] for leaves in (p_leaves, g_leaves, mask_leaves))
        grads = g if method.needs_grads else None
        report = None if on_event is None else functools.partial(_host_report, on_event, schedule, scope, names)
        new_m, info = _maybe_event(
            method, scope, (steps, targets, rates), updated_weights, grads, m, count, report, state.layout, fggp_event
        )
        if traced:
            # The inner update reads the large arrays of its state through a select on the event's
            # status (never true: the same bits), so it runs after the event's conditional, which
            # reads them too. With the state donated (``donate_argnums``) XLA then updates them in
            # place; unordered, it copied them into the conditional at every step (2x an Adam MLP
            # step on CPU). An optimization barrier does not order them (XLA drops it before copy
            # insertion); small arrays are left alone: their copies cost less than compiling a
            # select each (1,000 leaves).
            after = info[0] < 0

            def ordered(x: Any) -> Any:
                return jnp.where(after, jnp.zeros_like(x), x) if jnp.size(x) >= IN_PLACE_MIN_SIZE else x

            step_args = (g_leaves, jax.tree.map(ordered, state.inner), params, mask_leaves)
        u_leaves, inner_state = inner_step(*step_args)
        u = [u_leaves[i] for i in chosen]

        out_u, out_m = list(u_leaves), list(mask_leaves)
        for j, i in enumerate(chosen):
            out_u[i] = jnp.where(new_m[j], u[j], -p[j])
            out_m[i] = new_m[j]
        failed = info[0] != OK
        record = jnp.concatenate([count[None].astype(info.dtype), info]).astype(state.last_skip.dtype)
        state = PruneState(
            inner=inner_state,
            count=count,
            masks=treedef.unflatten(out_m),
            skipped=state.skipped + failed.astype(jnp.int32),
            last_skip=jnp.where(failed, record, state.last_skip),
            method=state.method,
            layout=state.layout,
        )
        if not isinstance(info, jax.core.Tracer) and int(info[0]) != OK:  # eager: report now
            if not skip_nonfinite:
                raise_skip(info, names, method, count)
            _warn_skip(method, names, count, info)
        return treedef.unflatten(out_u), state

    return optax.GradientTransformationExtraArgs(init, update)


def _event_at_zero(method, schedule, scope, distribution, allow_empty, shapes, weights, masks, pruned, layout):
    """The event at step 0, run by ``init`` on the params it is given: the weights the first update starts
    from (they become 0.0 where pruned in that update, as for a sparse start). There are no gradients at
    ``init``, so a method that scores by gradient is refused when the event would prune anything; use a
    later step. Returns the new masks and ``[code, tensor, count, stage, k]`` (eager failures raise)."""
    goal = targets(schedule, scope, distribution, shapes, 0, allow_empty)
    have = [sum(pruned.values())] if scope == "global" else [pruned.get(n, 0) for n in shapes]
    if not any(t > h for t, h in zip(goal, have)):
        return masks, jnp.zeros(5, count_dtype())
    if method.needs_grads:
        raise ConfigError(
            "schedule", schedule, f"has an event at step 0 (before the first update), where {method} has no "
            "gradients; start it at step >= 1, or use Magnitude(), GlobalMP() or Random()",
        )
    table = (np.zeros(1, np.int32), np.asarray([goal], count_dtype()), rate_bits(np.asarray([method.event_rate(0)])))
    new, info = _maybe_event(method, scope, table, lambda: weights, None, masks, jnp.zeros((), jnp.int32), None, layout)
    if not isinstance(info, jax.core.Tracer) and int(info[0]) != OK:
        raise_status(info[:4], list(shapes), method, info[4])
    return new, info


def _aligned(params: Any, mask_tree: Any) -> tuple[Any, list[Any], list[int]]:
    """params' treedef, the mask per leaf (None if not prunable), the prunable leaf indices."""
    treedef = jax.tree.structure(params)
    try:  # a None in params (a layer without bias) is an empty subtree there and None in the masks
        mask_leaves = treedef.flatten_up_to(mask_tree)
    except (ValueError, TypeError):
        mask_def = jax.tree.structure(mask_tree, is_leaf=_is_none)
        raise InputMismatchError(
            f"params have structure {treedef}, but the fggp state's masks have {mask_def}"
        ) from None
    for name, leaf, m in zip(leaf_names(params), jax.tree.leaves(params), mask_leaves):
        if m is not None and jnp.shape(leaf) != jnp.shape(m):
            raise InputMismatchError(f"params leaf {name} has shape {jnp.shape(leaf)}, its mask {jnp.shape(m)}")
    return treedef, mask_leaves, [i for i, m in enumerate(mask_leaves) if m is not None]


def _host_report(
    on_event: Callable, schedule: Schedule, scope: str, names: list[str], step, ks, sizes, pruned, code
) -> None:
    """Build the ``EventReport`` on the host from the event branch's counts (``jax.debug.callback``)."""
    sizes, pruned = np.asarray(sizes, np.int64), np.asarray(pruned, np.int64)
    step, k = int(step), [int(x) for x in np.asarray(ks)]
    on_event(EventReport(
        step, schedule.sparsity(step), k[0] if scope == "global" else dict(zip(names, k)),
        int(pruned.sum()), int(sizes.sum()), skipped=int(code) != OK, reason="" if int(code) == OK else f"code {code}",
        density={n: 1.0 - int(p) / max(1, int(s)) for n, s, p in zip(names, sizes, pruned)}, seconds=math.nan,
    ))


def _maybe_event(
    method, scope, tables, weights_fn, g, m, count, report=None, layout=None, host=None
) -> tuple[list[jax.Array], jax.Array]:
    """``lax.cond`` on "count is an event step": the event's new masks (the old ones on a failure)
    and ``[code, tensor, count, stage, k]`` (all 0 without event or failure), in the count type.
    ``weights_fn()`` (traced in the event branch) gives the weights as updated by the inner step;
    ``layout``: the state's ``ShardLayout`` (None: one whole-array program). ``host``: the
    caller's ``fggp_event`` (None: ``lax.cond``, decided on device; False: no event code at all,
    and an event step is recorded as missed, code ``MISSED``; True: the event runs unconditionally
    and applies only if the device agrees). With a host flag the program has no conditional, so a
    GPU never reads a predicate back between events."""
    steps, targets, rates = tables
    zero = jnp.zeros(5, count_dtype())
    if len(steps) == 0:
        return m, zero
    # Unrolled (no while loop: on a GPU each loop iteration would read its predicate on the host).
    row = jnp.clip(jnp.searchsorted(jnp.asarray(steps), count, method="scan_unrolled"), 0, len(steps) - 1)
    is_event = jnp.asarray(steps)[row] == count

    def event(operands):
        g, m, row = operands
        target = jnp.asarray(targets)[row]
        if flat_path(method, scope, len(m), layout):
            # One count over the masks concatenated as the flat selection does (XLA shares the
            # concatenation): no per-leaf counts in the program (compile time).
            flat = flat_concat(m)
            ks = jnp.maximum(0, target - (JAX.scalar(flat.size) - JAX.count(flat)))
        else:
            pruned = [JAX.scalar(x.size) - JAX.count(x) for x in m]
            done = JAX.reduce(pruned, range(len(m))) if scope == "global" else jnp.stack(pruned)
            ks = jnp.maximum(0, target - done)
        new, status = run_traced(method, scope, weights_fn(), g, m, ks, jnp.asarray(rates)[row], count, layout)
        k = ks[0] if scope == "global" else ks[jnp.clip(status.tensor, 0, len(m) - 1)]
        info = jnp.stack(materialize(*(jnp.asarray(v).astype(zero.dtype) for v in (*status, k))))
        out = new  # the old masks on a failure (``run_traced``)
        if report is not None:  # only in this branch: no host call between events
            sizes = jnp.stack([JAX.scalar(x.size) for x in out])
            pruned = jnp.stack([JAX.scalar(x.size) - JAX.count(x) for x in out])
            jax.debug.callback(report, count, ks, sizes, pruned, status.code)
        return out, info

    def no_event(operands):
        return list(operands[1]), zero

    if host is None:
        return jax.lax.cond(is_event, event, no_event, (g, m, row))
    if not host:
        return list(m), jnp.where(is_event, zero.at[0].set(MISSED), zero)
    new, info = event((g, m, row))
    return [jnp.where(is_event, a, b) for a, b in zip(new, m)], jnp.where(is_event, info, zero)


def raise_skip(info: Any, names: list[str], method: Method, step: Any) -> None:
    """Raise the error of a skipped event's ``[code, tensor, count, stage, k]``: the core's
    ``raise_status``, or a ``ConfigError`` for an event step passed ``fggp_event=False``.
    ``k == 0`` in a failure record means "not recorded" (a state migrated from fggp 0.1.0)."""
    code, k = int(info[0]), int(info[4])
    if code == MISSED:
        raise ConfigError(
            "fggp_event", False,
            f"step {int(step)} is an event step: pass fggp_event=fggp.jax.is_event(schedule, step) (the event "
            "was not run; the next event catches up)",
        )
    raise_status(info[:4], names, method, k if k > 0 else "unknown (not recorded by fggp 0.1.0)")


def is_event(schedule: Schedule, step: int) -> bool:
    """Whether the ``step``-th ``update`` (1-based: the optimizer steps completed after it) is a
    pruning event; pass it as ``tx.update(grads, opt_state, params, fggp_event=...)`` from a host
    step counter so the jitted step has no conditional (see docs/jax.md, "No host synchronisation")."""
    return int(step) >= 1 and bool(schedule.is_event(int(step)))


def _warn_skip(method: Method, names: list[str], step: Any, info: Any) -> None:
    try:
        raise_skip(info, names, method, step)
    except Exception as error:  # noqa: BLE001 - turned into the warning's text
        warnings.warn(f"fggp.jax: event at step {int(step)} skipped: {error}", RuntimeWarning, stacklevel=3)


def _mask_params_like(tree: Any, treedef: Any, mask_leaves: list[Any]) -> Any:
    """Zero, where pruned, every floating leaf of each subtree of ``tree`` shaped like params."""

    def params_like(x: Any) -> bool:
        return jax.tree.structure(x) == treedef

    def mask(x: Any) -> Any:
        if not params_like(x):
            return x
        leaves = treedef.flatten_up_to(x)
        for i, (leaf, m) in enumerate(zip(leaves, mask_leaves)):
            if (
                m is not None
                and hasattr(leaf, "dtype")
                and jnp.issubdtype(leaf.dtype, jnp.inexact)
                and jnp.shape(leaf) == jnp.shape(m)
            ):
                leaves[i] = jnp.where(m, leaf, jnp.zeros((), leaf.dtype))
        return treedef.unflatten(leaves)

    return jax.tree.map(mask, tree, is_leaf=params_like)


def migrate_state(opt_state: Any, method: Method) -> Any:
    """``opt_state`` with every fggp 0.1.0 ``PruneState`` upgraded: ``last_skip`` gets the
    failed group's ``k`` (0: unknown) and the state records ``method``'s config. Masks, step
    counter, skip count and inner state are kept as they are; current states pass unchanged."""

    def upgrade(x: Any) -> Any:
        if not isinstance(x, PruneState) or (x.method is not None and jnp.shape(x.last_skip) == (6,)):
            return x
        last = jnp.asarray(x.last_skip)
        last = jnp.concatenate([last, jnp.zeros(6 - last.shape[0], last.dtype)]) if last.shape[0] < 6 else last
        config = MethodConfig(json.dumps(method.to_config(), sort_keys=True))
        return x._replace(last_skip=last.astype(count_dtype()), method=config)

    return jax.tree.map(upgrade, opt_state, is_leaf=lambda x: isinstance(x, PruneState))
