"""Two per-tensor rules that run inside the one selection algorithm: Global MP's "gupta"
minimum threshold and GraNet's prune-and-regrow.

Both are written against the backend primitives like ``selection.prune_group``: counts stay
backend scalars, nothing branches on a value and nothing raises, so the same code runs
eagerly (NumPy, PyTorch, Keras) and traced inside ``jax.jit`` (``fggp.jax.wrap``), and every
backend gives the same masks. Problems come back as flags for the caller's ``Status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backend import INF_KEY, Backend, score_dtype
from .errors import ConfigError

__all__ = ["gupta_counts", "gupta_select", "regrow", "check_gupta"]


def check_gupta(be: Backend, n_total: int) -> None:
    """The gupta rule compares products of two counts: refuse a group where they could overflow."""
    if n_total * n_total > be.max_count:
        raise ConfigError(
            "GlobalMP(rule='gupta')", f"{n_total} prunable entries",
            f"the rule multiplies counts: the {be.name} backend holds at most {be.max_count}, enough for "
            f"{int(be.max_count ** 0.5)} entries (enable 64-bit integers, e.g. "
            "jax.config.update('jax_enable_x64', True), or use rule='reserve')",
        )


def gupta_counts(be: Backend, global_counts: Sequence[Any], n_act: Sequence[Any], k: Any, m: int) -> tuple[list, Any]:
    """Per-tensor pruned counts of the authors' clamp-and-redistribute rule, and a feasible flag.

    ``global_counts``: per tensor, how many of the ``k`` smallest |w| of the group (global
    magnitude pruning) fall in it (``c_l``); ``n_act``: active entries per tensor; ``m``: the
    minimum threshold (>= 1). Tensors with ``n_act <= m`` stay as they are. With ``S`` the clamped
    tensors, ``R = k - sum_S (n_act - m)`` and ``C = sum_{free} c_l``, a free tensor is clamped
    when ``c_l * R > (n_act_l - m) * C`` (it would keep fewer than ``m``); each round adds every
    such tensor, so ``len(n_act)`` rounds reach the fixed point. Then clamped tensors prune
    ``n_act - m`` and free ones ``floor(c_l * R / C)``. Infeasible (the authors' loop never
    ends): budget ``R > 0`` left with ``C == 0``.
    """
    zero, one = be.scalar(0, k), be.scalar(1, k)

    def _total(values: Sequence[Any]) -> Any:
        return be.running(values)[1]

    large = [a > m for a in n_act]
    room = [a - m for a in n_act]
    clamped = [a < 0 for a in n_act]  # all False, as backend booleans
    for _ in range(len(n_act)):
        budget = k - _total([be.where(s, r, zero) for s, r in zip(clamped, room)])
        weight = _total([be.where(big & ~s, c, zero) for big, s, c in zip(large, clamped, global_counts)])
        clamped = [
            s | (big & (c * budget > r * weight))
            for s, big, c, r in zip(clamped, large, global_counts, room)
        ]
    budget = k - _total([be.where(s, r, zero) for s, r in zip(clamped, room)])
    weight = _total([be.where(big & ~s, c, zero) for big, s, c in zip(large, clamped, global_counts)])
    safe = be.where(weight > 0, weight, one)
    counts = [
        be.where(s, r, be.where(big, c * budget // safe, zero))
        for s, big, c, r in zip(clamped, large, global_counts, room)
    ]
    return counts, (budget <= 0) | (weight > 0)


def gupta_select(
    be: Backend, keys: Sequence[Any], n_act: Sequence[Any], k: Any, m: int, score: str, tensors: Sequence[int]
) -> tuple[list[Any], Any]:
    """Flat masks of the entries the gupta rule prunes, and the feasible flag. ``keys``: magnitude
    keys per tensor with non-candidates at the +inf key; ``m``: the minimum threshold."""
    from .selection import smallest  # the one selection; imported here (selection imports this module)

    chosen = smallest(be, keys, k, score, tensors)
    global_counts = be.tally([be.count(c) for c in chosen], tensors)[0]
    counts, feasible = gupta_counts(be, global_counts, n_act, k, m)
    return [smallest(be, [x], n, score, [t])[0] for x, n, t in zip(keys, counts, tensors)], feasible


def regrow(
    be: Backend,
    weights: Sequence[Any],
    grads: Sequence[Any],
    kept: Sequence[Any],
    negated_rate: Any,
    tensors: Sequence[int],
) -> tuple[list[Any], list[Any]]:
    """GraNet's per-tensor prune-and-regrow after the event's pruning; new flat kept masks and,
    per tensor, how many regrowth candidates have a non-finite gradient.

    Per tensor: ``r = ceil(rate * kept_l)`` (``-floor_mul(-rate, kept_l)``: GraNet's
    ``math.ceil`` in float64), the ``r`` kept entries with the smallest (|w|, index) are removed,
    then the ``r`` entries with the largest |g| (ties to the lower index) among all pruned
    entries (the just removed included) are kept again. The kept count is unchanged.
    """
    from .selection import smallest

    nnz = be.tally([be.count(m) for m in kept], tensors)[0]
    out, bad = [], []
    for w, g, m, n, t in zip(weights, grads, kept, nnz, tensors):
        score = score_dtype([be.dtype_name(w)])
        r = be.minimum(-be.floor_mul(negated_rate, n), n)
        removed = smallest(be, [be.exclude(be.keys(w, None, score), m)], r, score, [t])[0]
        still = m & ~removed
        pruned = ~still
        grad_keys = be.keys(g, None, score)
        bad.append(be.nonfinite(grad_keys, pruned))
        top = be.as_key(be.scalar(INF_KEY[score] - 1, n), grad_keys)
        largest_first = be.exclude(top - grad_keys, pruned)  # reversed order; ties stay lowest index first
        grown = smallest(be, [largest_first], r, score, [t])[0]
        out.append(still | grown)
    return out, be.tally(bad, tensors)[0]
