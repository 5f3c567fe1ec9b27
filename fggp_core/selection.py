"""Which entries to prune: one algorithm, written once against the executor primitives.

``smallest(score, k, among)`` is the only selection: the ``k`` entries of ``among`` with the
smallest ``(score, canonical index)`` pairs. It finds the k-th smallest score ``v`` by a
partition (O(N), no sort), keeps every entry below ``v``, then the lowest-index entries equal
to ``v`` until exactly ``k`` are taken. A method is a sequence of such stages (``methods.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ConfigError, InputMismatchError, NonFiniteScoreError, UnreachableTargetError
from .executor import FLOAT_DTYPES, NUMPY, Executor, score_dtype
from .methods import GlobalMP, Method

__all__ = ["select", "smallest", "prune_group", "SCOPES", "random_scores"]

SCOPES = ("global", "layerwise")


def smallest(ex: Executor, score: Any, k: Any, among: Any) -> Any:
    """Flat mask of the ``k`` entries of ``among`` with the smallest (score, index).

    ``score`` is consumed (may be overwritten). ``k`` may be a traced value (JAX): there is
    no Python branch on it. Requires ``0 <= k <= count(among)`` and finite scores in ``among``.
    """
    x = ex.exclude(score, among)
    v = ex.kth_value(x, k)
    below = x < v
    tied = ex.first_true(x == v, k - ex.count(below))
    return below | tied


def random_scores(seed: int, step: int | None, n: int) -> np.ndarray:
    """The host-side uniform draw of ``Random(seed)`` at ``step``: float32 in [0, 1), size n."""
    return np.random.default_rng([seed, 0 if step is None else step]).random(n, dtype=np.float32)


def prune_group(
    ex: Executor,
    method: Method,
    names: list[str],
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    active: Any,
    k: int,
    step: int | None,
) -> Any:
    """Flat mask of the ``k`` entries of the flat ``active`` mask that ``method`` prunes.

    ``names`` are the tensors of one selection group (all of them under global scope, one
    under layerwise scope), concatenated in that order. Raises ``NonFiniteScoreError`` before
    selecting anything when an active entry has a NaN/infinite score.
    """
    w = [weights[n] for n in names]
    dtype = score_dtype([ex.dtype_name(t) for t in w])
    sizes = [int(np.prod(ex.shape(t), dtype=np.int64)) for t in w]

    def score(kind: str) -> Any:
        if kind == "random":
            return ex.from_host(random_scores(method.seed, step, sum(sizes)), like=w[0])  # type: ignore[attr-defined]
        if kind == "magnitude":
            flat = ex.flat_score(w, None, dtype)
        elif kind == "gradient":
            flat = ex.flat_score([grads[n] for n in names], None, dtype)  # type: ignore[index]
        else:
            flat = ex.flat_score(w, [grads[n] for n in names], dtype)  # type: ignore[index]
        start = 0
        for name, n in zip(names, sizes):
            bad = ex.nonfinite(flat[start : start + n], active[start : start + n])
            if int(bad):
                raise NonFiniteScoreError(name, int(bad), kind)
            start += n
        return flat

    n_active = int(ex.count(active))
    stages = method.stages(k, n_active, step)
    # A non-finite score raises inside score(); select() is pure, so nothing is half-applied.
    candidates = active
    if isinstance(method, GlobalMP):
        # The NaN/inf check comes first (inside score): the reserve needs finite scores.
        candidates = active & ~_reserved(ex, method, score("magnitude"), sizes, active)
        available = int(ex.count(candidates))
        if available < k:
            raise UnreachableTargetError(
                f"min_keep={method.min_keep!r} reserves too much: only {available} unreserved active "
                f"entries remain, but k={k} must be pruned; lower min_keep or the target sparsity"
            )
    for kind, size in stages:
        candidates = smallest(ex, score(kind), size, candidates)
    return candidates


def _reserved(ex: Executor, method: GlobalMP, magnitudes: Any, sizes: list[int], active: Any) -> Any:
    """Per tensor, the min(M, active_l) active entries with the largest (|w|, index).

    ``magnitudes`` is the group's flat |w|; it is consumed, one tensor's slice at a time.
    """
    m = method.reserve_count(sum(sizes))
    parts, start = [], 0
    for n in sizes:
        act = active[start : start + n]
        n_act = int(ex.count(act))
        below = smallest(ex, magnitudes[start : start + n], n_act - min(m, n_act), act)
        parts.append(act & ~below)
        start += n
    return ex.flat_mask(parts) if len(parts) > 1 else parts[0]


def validate(
    ex: Executor,
    method: Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    scope: str,
) -> list[str]:
    """Check names, shapes and dtypes; return the canonical name order (that of ``weights``)."""
    if not isinstance(method, Method):
        raise ConfigError("method", method, "must be a fggp method such as FGGP(), Magnitude() or GlobalMP()")
    if scope not in SCOPES:
        raise ConfigError("scope", scope, f"must be one of {SCOPES}")
    names = list(weights)
    if not names:
        raise InputMismatchError("weights is empty: nothing is prunable")
    if set(masks) != set(names):
        raise InputMismatchError(f"masks names {sorted(masks)} differ from weights names {sorted(names)}")
    if method.needs_grads:
        if grads is None:
            raise ConfigError("grads", None, f"method {method.name!r} needs gradients")
        if set(grads) != set(names):
            raise InputMismatchError(f"grads names {sorted(grads)} differ from weights names {sorted(names)}")
    for name in names:
        shape = ex.shape(weights[name])
        if ex.dtype_name(weights[name]) not in FLOAT_DTYPES:
            raise InputMismatchError(
                f"weights[{name!r}] has dtype {ex.dtype_name(weights[name])}; allowed: {FLOAT_DTYPES}"
            )
        if ex.shape(masks[name]) != shape:
            raise InputMismatchError(f"masks[{name!r}] has shape {ex.shape(masks[name])}, weights {shape}")
        if ex.dtype_name(masks[name]) != "bool":
            raise InputMismatchError(f"masks[{name!r}] has dtype {ex.dtype_name(masks[name])}; masks must be bool")
        if method.needs_grads:
            g = grads[name]  # type: ignore[index]
            if ex.shape(g) != shape:
                raise InputMismatchError(f"grads[{name!r}] has shape {ex.shape(g)}, weights {shape}")
            if ex.dtype_name(g) not in FLOAT_DTYPES:
                raise InputMismatchError(f"grads[{name!r}] has dtype {ex.dtype_name(g)}; allowed: {FLOAT_DTYPES}")
    return names


def _check_k(argument: str, k: object, n_active: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ConfigError(argument, k, "must be an integer >= 0")
    if k > n_active:
        raise UnreachableTargetError(f"{argument}={k} exceeds the {n_active} active entries it can prune")
    return int(k)


def select(
    method: Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
    executor: Executor = NUMPY,
) -> dict[str, Any]:
    """New masks with exactly ``k`` more entries pruned by ``method``; never un-prunes.

    ``weights``, ``grads`` and ``masks`` map tensor names to arrays in canonical order (the
    order of ``weights``); masks are boolean (True = kept). ``grads`` may be None for methods
    that need none. ``scope="global"``: one selection over all tensors, ``k`` an int.
    ``scope="layerwise"``: one selection per tensor, ``k`` a mapping name -> count. ``step``
    feeds annealed rates and ``Random``. The inputs are never modified.
    """
    ex = executor
    names = validate(ex, method, weights, grads, masks, scope)
    if scope == "global":
        groups = [(names, _check_k("k", k, _active(ex, masks, names)))]
    else:
        if not isinstance(k, Mapping) or set(k) != set(names):
            raise ConfigError("k", k, "layerwise scope needs a mapping tensor name -> count for every tensor")
        groups = [([n], _check_k(f"k[{n!r}]", k[n], _active(ex, masks, [n]))) for n in names]
    result = {}
    for group, count in groups:
        active = ex.flat_mask([masks[n] for n in group])
        pruned = prune_group(ex, method, group, weights, grads, active, count, step)
        kept = ex.split(active & ~pruned, [ex.shape(masks[n]) for n in group])
        result.update(zip(group, kept))
    return {n: result[n] for n in names}


def _active(ex: Executor, masks: Mapping[str, Any], names: list[str]) -> int:
    return sum(int(ex.count(masks[n])) for n in names)
