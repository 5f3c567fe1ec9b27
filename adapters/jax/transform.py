"""``wrap``: an optax transformation that prunes inside ``jax.jit``; the masks live in its state.

One ``update`` (events included) is one traceable function with static shapes:

1. gradients of pruned entries are zeroed, then the inner transformation updates;
2. the step counter (completed optimizer steps) advances; if it is an event step, the event
   runs in a ``lax.cond`` branch: the count to prune is ``k = max(0, target - pruned)``, where
   ``target`` comes from a table of (event step -> target pruned count) computed on the host in
   float64 by the core's schedule (``round(N * s(t))``) and embedded as a constant, and
   ``pruned`` is counted on device (integers, exact); selection is ``select_traced`` on the
   weights as updated by the inner transformation (``params + inner updates``) and this step's
   gradients;
3. updates are ``inner update`` where kept and ``-params`` where pruned, so pruned params are
   exactly 0.0 after ``optax.apply_updates``. Inner state subtrees shaped like params (momentum,
   Adam moments) are zeroed where pruned *before* the inner step reads them (step 1), fused
   into it: nothing pruned is ever revived, and the step between events costs no extra pass
   (moments of entries pruned at an event read zero from the next update on).

The event branch recomputes the inner step from the step's inputs (instead of taking its
result as an operand), so between events the inner update, the masking and
``apply_updates`` stay one fused, asynchronous XLA program with no host callback.

An event the core would refuse (a NaN/inf score among active entries, an unreachable
GlobalMP target) cannot raise under jit: it is skipped (masks unchanged), warned about from
the host, counted in the state, and ``check(opt_state)`` raises the core's error naming the
leaf path. Called eagerly (no jit), ``update`` raises at once unless ``skip_nonfinite=True``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fggp_core.distribution import SparseStart, layer_targets, random_masks
from fggp_core.errors import ConfigError, InputMismatchError
from fggp_core.methods import Method
from fggp_core.pruner import check_config
from fggp_core.schedule import Schedule

from .selection import OK, pool_rates, raise_status, select_traced

__all__ = ["PruneState", "wrap", "masks", "check", "apply_masks", "leaf_names"]

Prunable = Callable[[str, Any], bool] | Any | None


class PruneState(NamedTuple):
    """``wrap``'s state (a pytree). ``masks`` is shaped like params: a bool array (True = kept)
    per prunable leaf, ``None`` for the others. ``last_skip``: ``[step, code, tensor, count, score]``
    of the latest skipped event (code 1: non-finite score, 2: unreachable target)."""

    inner: Any
    count: jax.Array
    masks: Any
    skipped: jax.Array
    last_skip: jax.Array


def _is_none(x: Any) -> bool:
    return x is None


def leaf_names(params: Any) -> list[str]:
    """The path of every leaf of ``params`` (``jax.tree_util.keystr``), in flatten order."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _prunable_flags(params: Any, prunable: Prunable) -> list[bool]:
    paths = leaf_names(params)
    leaves = jax.tree.leaves(params)
    if prunable is None:
        return [jnp.ndim(x) >= 2 and jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves]
    if callable(prunable):
        return [bool(prunable(p, x)) for p, x in zip(paths, leaves)]
    flags = jax.tree.leaves(prunable)
    if jax.tree.structure(prunable) != jax.tree.structure(params):
        raise InputMismatchError(
            f"prunable's pytree structure {jax.tree.structure(prunable)} differs from params' "
            f"{jax.tree.structure(params)}"
        )
    return [bool(f) for f in flags]


def _event_table(schedule: Schedule, scope: str, distribution: str, shapes: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(event steps >= 1, target pruned counts): int32, one row per event (one column per
    tensor under layerwise scope). Host float64 arithmetic of the core's schedule."""
    steps = [t for t in schedule.events() if t >= 1]
    n = sum(math.prod(s) for _, s in shapes)
    if scope == "global":
        targets = [[schedule.target_pruned(t, n)] for t in steps]
    else:
        named = dict(shapes)
        targets = [list(layer_targets(named, schedule.sparsity(t), distribution).values()) for t in steps]
    return np.asarray(steps, np.int32), np.asarray(targets, np.int32).reshape(len(steps), -1)


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
) -> optax.GradientTransformation:
    """Prune params gradually while ``inner`` optimizes them; jittable, events included.

    ``method``: ``FGGP()``, ``Magnitude()``, ... ``schedule``: e.g. ``PolynomialSchedule(...)``;
    its steps count completed optimizer steps (``update`` calls; put ``wrap`` inside
    ``optax.MultiSteps`` so accumulation steps do not count). ``scope``: "global" or
    "layerwise" (per-leaf targets by ``distribution``, "uniform" or "erk"). ``prunable``: None
    (floating leaves with ``ndim >= 2``: dense and conv kernels), a predicate
    ``(path: str, leaf) -> bool`` (path as ``jax.tree_util.keystr``) or a pytree of bools like
    params. ``sparse_start``: a ``SparseStart`` drawn on the host at ``init`` (call
    ``apply_masks`` on the initial params). ``skip_nonfinite``: an eager ``update`` warns and
    skips instead of raising (under jit events are always skipped and flagged; see ``check``).
    ``update`` needs ``params``. Keep ``wrap`` outermost (a later transformation could move
    pruned params off zero).
    """
    check_config(method, schedule, scope, distribution, sparse_start)
    if isinstance(inner, optax.MultiSteps) or not hasattr(inner, "update"):
        raise ConfigError(
            "inner", inner,
            "must be an optax.GradientTransformation; for gradient accumulation use "
            "optax.MultiSteps(fggp.jax.wrap(inner, ...), k) so events count real optimizer steps",
        )

    table = functools.lru_cache(maxsize=8)(functools.partial(_event_table, schedule, scope, distribution))

    def init(params: Any) -> PruneState:
        names, leaves = leaf_names(params), jax.tree.leaves(params)
        flags = _prunable_flags(params, prunable)
        chosen = [i for i, f in enumerate(flags) if f]
        if not chosen:
            raise ConfigError("prunable", prunable, f"selects no leaf of params (leaves: {names})")
        for i in chosen:
            dtype = jnp.result_type(leaves[i])
            if not jnp.issubdtype(dtype, jnp.floating):
                raise InputMismatchError(
                    f"prunable leaf {names[i]} has dtype {dtype}; only floating leaves can be pruned"
                )
        if sum(math.prod(jnp.shape(leaves[i])) for i in chosen) >= 2**31 and not jax.config.jax_enable_x64:
            raise ConfigError("params", "2**31 or more prunable entries", "needs jax_enable_x64 (counts are int32)")
        host = {}
        if sparse_start is not None:
            host = random_masks({names[i]: tuple(jnp.shape(leaves[i])) for i in chosen}, sparse_start)
        mask_leaves: list[Any] = [None] * len(leaves)
        for i in chosen:
            ones = jnp.ones_like(leaves[i], dtype=bool)
            mask_leaves[i] = ones if names[i] not in host else ones & jnp.asarray(host[names[i]])
        treedef = jax.tree.structure(params)
        return PruneState(
            inner=inner.init(params),
            count=jnp.zeros((), jnp.int32),
            masks=treedef.unflatten(mask_leaves),
            skipped=jnp.zeros((), jnp.int32),
            last_skip=jnp.zeros(5, jnp.int32),
        )

    def update(updates: Any, state: PruneState, params: Any = None) -> tuple[Any, PruneState]:
        if params is None:
            raise ConfigError("params", None, "fggp.jax.wrap needs params: call tx.update(grads, opt_state, params)")
        treedef, mask_leaves, chosen = _aligned(params, state.masks)
        p_leaves = treedef.flatten_up_to(params)
        g_leaves = treedef.flatten_up_to(updates)

        def inner_step() -> tuple[list[Any], Any]:
            zero = [None if m is None else jnp.zeros((), g.dtype) for g, m in zip(g_leaves, mask_leaves)]
            masked = [g if m is None else jnp.where(m, g, z) for g, m, z in zip(g_leaves, mask_leaves, zero)]
            # Inner state shaped like params (momentum, Adam moments) is zeroed where pruned before
            # the inner step reads it: fused into the step, so nothing pruned is ever revived.
            inner_in = _mask_params_like(state.inner, treedef, mask_leaves)
            inner_updates, inner_state = inner.update(treedef.unflatten(masked), inner_in, params)
            return treedef.flatten_up_to(inner_updates), inner_state

        def updated_weights() -> list[jax.Array]:
            # Run inside the event branch: the same inner step again, from this step's inputs,
            # so the step between events keeps the inner update fused (no buffer for it).
            u = jax.lax.optimization_barrier(inner_step()[0])  # rounded as apply_updates sees it
            return [(p_leaves[i] + u[i]).astype(p_leaves[i].dtype) for i in chosen]  # = optax.apply_updates

        u_leaves, inner_state = inner_step()
        count = state.count + 1
        names = [leaf_names(params)[i] for i in chosen]
        shapes = tuple((n, tuple(jnp.shape(p_leaves[i]))) for n, i in zip(names, chosen))
        steps, targets = table(shapes)
        p, u, g, m = ([leaves[i] for i in chosen] for leaves in (p_leaves, u_leaves, g_leaves, mask_leaves))
        new_m, status, _ = _maybe_event(method, scope, steps, targets, updated_weights, g, m, count, names)

        out_u, out_m = list(u_leaves), list(mask_leaves)
        for j, i in enumerate(chosen):
            out_u[i] = jnp.where(new_m[j], u[j], -p[j])
            out_m[i] = new_m[j]
        new_masks = treedef.unflatten(out_m)
        failed = status[0] != OK
        state = PruneState(
            inner=inner_state,
            count=count,
            masks=new_masks,
            skipped=state.skipped + failed.astype(jnp.int32),
            last_skip=jnp.where(failed, jnp.concatenate([count[None], status]), state.last_skip),
        )
        if not isinstance(status, jax.core.Tracer) and int(status[0]) != OK:  # eager: report now
            if not skip_nonfinite:
                raise_status(status, names)
            _warn_skip(names, count, status)
        return treedef.unflatten(out_u), state

    return optax.GradientTransformation(init, update)


def _aligned(params: Any, mask_tree: Any) -> tuple[Any, list[Any], list[int]]:
    """params' treedef, the mask per leaf (None if not prunable), the prunable leaf indices."""
    treedef = jax.tree.structure(params)
    mask_def = jax.tree.structure(mask_tree, is_leaf=_is_none)
    if mask_def != treedef:
        raise InputMismatchError(f"params have structure {treedef}, but the fggp state's masks have {mask_def}")
    mask_leaves = jax.tree.leaves(mask_tree, is_leaf=_is_none)
    for name, leaf, m in zip(leaf_names(params), jax.tree.leaves(params), mask_leaves):
        if m is not None and jnp.shape(leaf) != jnp.shape(m):
            raise InputMismatchError(f"params leaf {name} has shape {jnp.shape(leaf)}, its mask {jnp.shape(m)}")
    return treedef, mask_leaves, [i for i, m in enumerate(mask_leaves) if m is not None]


def _maybe_event(method, scope, steps, targets, weights_fn, g, m, count, names) -> tuple[list, jax.Array, jax.Array]:
    """``lax.cond`` on "count is an event step": the event's new masks and status, else the old;
    and whether it is an event.
    ``weights_fn()`` (traced in the event branch) gives the weights as updated by the inner step."""
    if len(steps) == 0:
        return m, jnp.zeros(4, jnp.int32), jnp.bool_(False)
    rates = pool_rates(method, steps)
    # Unrolled (no while loop: on a GPU each loop iteration would read its predicate on the host).
    row = jnp.clip(jnp.searchsorted(jnp.asarray(steps), count, method="scan_unrolled"), 0, len(steps) - 1)
    is_event = jnp.asarray(steps)[row] == count

    def event(operands):
        g, m, row = operands
        weights = weights_fn()
        pruned = jnp.stack([x.size - jnp.sum(x, dtype=jnp.int32) for x in m])
        target = jnp.asarray(targets)[row]
        k = jnp.maximum(0, target - (jnp.sum(pruned) if scope == "global" else pruned))
        rate = None if rates is None else (rates, row)
        new, status = select_traced(method, scope, weights, g, m, k if scope == "layerwise" else k[0], count, rate)
        return new, status

    def no_event(operands):
        return list(operands[1]), jnp.zeros(4, jnp.int32)

    return (*jax.lax.cond(is_event, event, no_event, (g, m, row)), is_event)


def _warn_skip(names: list[str], step: Any, status: Any) -> None:
    try:
        raise_status(status, names)
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


# -- reading the state -----------------------------------------------------------------------------


def find_state(opt_state: Any) -> PruneState:
    """The ``PruneState`` inside ``opt_state`` (also inside chain / MultiSteps states)."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PruneState))
             if isinstance(x, PruneState)]
    if len(found) != 1:
        raise InputMismatchError(f"expected one fggp.jax.wrap state inside opt_state, found {len(found)}")
    return found[0]


def masks(opt_state: Any) -> Any:
    """The masks as a pytree shaped like params: a bool array (True = kept) for every prunable
    leaf, ``None`` for every leaf that is not pruned. Works on nested optax states."""
    return find_state(opt_state).masks


def check(opt_state: Any) -> None:
    """Raise the core's error for the latest event skipped under jit (``NonFiniteScoreError``
    naming the leaf path and score, or ``UnreachableTargetError``); return None if none was."""
    state = find_state(opt_state)
    if int(state.skipped) == 0:
        return
    names = [n for n, m in zip(leaf_names(state.masks), jax.tree.leaves(state.masks)) if m is not None]
    raise_status(np.asarray(state.last_skip)[1:], names)


def skipped_events(opt_state: Any) -> int:
    """How many events were skipped (non-finite scores or unreachable targets)."""
    return int(find_state(opt_state).skipped)


def apply_masks(params: Any, opt_state: Any) -> Any:
    """``params`` with pruned entries set to 0.0 (e.g. right after ``init`` with a sparse start)."""
    treedef, mask_leaves, _ = _aligned(params, masks(opt_state))
    leaves = treedef.flatten_up_to(params)
    return treedef.unflatten(
        [x if m is None else jnp.where(m, x, jnp.zeros((), x.dtype)) for x, m in zip(leaves, mask_leaves)]
    )

