"""Reading ``wrap``'s state: masks, skipped events, sparsity and per-leaf reports.

Every function takes the whole optimizer state and finds the ``PruneState`` inside it (also
inside ``optax.chain``, ``optax.MultiSteps`` and Flax NNX optimizer states).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fggp_core.errors import InputMismatchError

from .transform import PruneState, _aligned, leaf_names, raise_skip

__all__ = ["find_state", "masks", "check", "skipped_events", "apply_masks", "sparsity", "layer_report"]


def find_state(opt_state: Any) -> PruneState:
    """The ``PruneState`` inside ``opt_state`` (also inside chain / MultiSteps states)."""
    found = [
        x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PruneState))
        if isinstance(x, PruneState)
    ]
    if len(found) != 1:
        raise InputMismatchError(f"expected one fggp.jax.wrap state inside opt_state, found {len(found)}")
    return found[0]


def masks(opt_state: Any) -> Any:
    """The masks as a pytree shaped like params: a bool array (True = kept) for every prunable
    leaf, ``None`` for every leaf that is not pruned. Works on nested optax states."""
    return find_state(opt_state).masks


def check(opt_state: Any) -> None:
    """Raise the core's error for the latest event skipped under jit (``NonFiniteScoreError``
    naming the leaf path and score, or ``UnreachableTargetError`` with the group's ``k``; a
    ``ConfigError`` for an event step updated with ``fggp_event=False``); None if none was."""
    state = find_state(opt_state)
    if int(np.asarray(state.skipped)) == 0:
        return
    names = leaf_names(state.masks)  # the prunable leaves: None leaves have no path
    record = np.asarray(state.last_skip)
    raise_skip(record[1:], names, state.method.method(), record[0])


def skipped_events(opt_state: Any) -> int:
    """How many events were skipped (non-finite scores or unreachable targets)."""
    return int(np.asarray(find_state(opt_state).skipped))


def apply_masks(params: Any, opt_state: Any) -> Any:
    """``params`` with pruned entries set to 0.0 (e.g. right after ``init`` with a sparse start)."""
    treedef, mask_leaves, _ = _aligned(params, masks(opt_state))
    leaves = treedef.flatten_up_to(params)
    return treedef.unflatten(
        [x if m is None else jnp.where(m, x, jnp.zeros((), x.dtype)) for x, m in zip(leaves, mask_leaves)]
    )


def layer_report(opt_state: Any) -> dict[str, dict[str, float]]:
    """Per prunable leaf path (``jax.tree_util.keystr``): ``size`` (entries), ``pruned`` (entries)
    and ``density`` (kept fraction, 1.0 for an empty leaf)."""
    tree = masks(opt_state)
    report = {}
    for name, m in zip(leaf_names(tree), jax.tree.leaves(tree)):
        size = math.prod(np.shape(m))
        pruned = size - int(np.count_nonzero(np.asarray(m)))
        report[name] = {"size": size, "pruned": pruned, "density": 1.0 - pruned / max(1, size)}
    return report


def sparsity(opt_state: Any) -> float:
    """Pruned fraction over all prunable entries (0.0 when there are none)."""
    report = layer_report(opt_state).values()
    total = sum(r["size"] for r in report)
    return sum(r["pruned"] for r in report) / total if total else 0.0
