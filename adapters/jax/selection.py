"""Selection on JAX arrays: ``select`` (eager, the core's own code) and its traced twin.

``select`` is ``fggp_core.select`` with the JAX executor: every check, count and error is the
core's. Under ``jax.jit`` the core cannot run as is (it turns counts into Python ints and
raises), so ``select_traced`` runs the same stages (``method.stages``) through the same
``fggp_core.smallest`` with traced counts, and returns a *status* instead of raising:

- the stage sizes before the last (the FGGP pool ``max(k, floor(rate * |A|))``) are the
  float64 host arithmetic of ``method.stages`` itself, fetched with ``jax.pure_callback``
  (only for two-stage methods, only when the selection runs);
- the Random method's scores are the host draw ``fggp_core.random_scores(seed, step, n)``,
  also by ``pure_callback``;
- an error the core would raise becomes ``status = [code, tensor index, count, score]``
  (code 1: non-finite score, 2: unreachable target), first in the core's own check order.
  ``raise_status`` turns it back into the core's exception on the host.

``select_jit`` is the whole selection compiled once per problem shape, with ``k`` and
``step`` traced; it validates on the host first and raises exactly what the core raises.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fggp_core
from fggp_core.errors import NonFiniteScoreError, UnreachableTargetError
from fggp_core.executor import score_dtype
from fggp_core.methods import GlobalMP, Method, TwoStage
from fggp_core.selection import _check_k, random_scores, smallest, validate

from .executor import JAX, host_score_bits

__all__ = [
    "select", "select_jit", "select_traced", "raise_status", "pool_rates", "KINDS", "OK", "NONFINITE", "UNREACHABLE",
]

KINDS = ("magnitude", "gradient", "taylor", "random")
OK, NONFINITE, UNREACHABLE = 0, 1, 2


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
    """``fggp_core.select`` on JAX arrays, executed with jnp ops on the arrays' device(s).

    Same arguments, result (bool masks, True = kept) and errors as the core; inputs are
    converted with ``jnp.asarray`` (so float64 becomes float32 unless ``jax_enable_x64``).
    """
    weights = {n: jnp.asarray(w) for n, w in weights.items()}
    grads = None if grads is None else {n: jnp.asarray(g) for n, g in grads.items()}
    masks = {n: jnp.asarray(m) for n, m in masks.items()}
    return fggp_core.select(method, weights, grads, masks, k, scope=scope, step=step, executor=JAX)


# -- traced selection ---------------------------------------------------------------------------


def _stage_plan(method: Method) -> list[str]:
    """The score of each stage; the stage structure never depends on k, |A| or step."""
    return [kind for kind, _ in method.stages(0, 0, 0)]


def _host_pool_sizes(method: Method, k: np.ndarray, n_active: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Sizes of all stages but the last, per group: the core's float64 host arithmetic."""
    rows = [[size for _, size in method.stages(int(a), int(b), int(step))[:-1]] for a, b in zip(k, n_active)]
    return np.asarray(rows, dtype=np.int32).reshape(len(rows), -1)


def _host_random(seed: int, n: int, step: np.ndarray) -> np.ndarray:
    return host_score_bits(random_scores(seed, int(step), n))


def select_traced(
    method: Method,
    scope: str,
    weights: Sequence[jax.Array],
    grads: Sequence[jax.Array] | None,
    masks: Sequence[jax.Array],
    k: jax.Array,
    step: jax.Array,
    rate: tuple[np.ndarray, jax.Array] | None = None,
) -> tuple[list[jax.Array], jax.Array]:
    """New masks and a status, traceable under ``jax.jit`` (lists in canonical order).

    ``k``: int32 scalar (global scope) or int32 vector, one count per tensor (layerwise);
    every count must lie in ``[0, active]``. ``step``: int32 scalar (the event's step; for
    Random and annealed rates). ``rate``: for a ``TwoStage`` method, ``(table, row)``: the
    float64 rate at this step is ``table[row]`` (host values); the pool size is then computed
    on device (no host callback). On a non-zero status the returned masks are the input masks.
    """
    ex = JAX
    groups = [list(range(len(weights)))] if scope == "global" else [[i] for i in range(len(weights))]
    ks = jnp.reshape(jnp.asarray(k, jnp.int32), (len(groups),))
    step = jnp.asarray(step, jnp.int32)
    plan = _stage_plan(method)
    actives = [ex.flat_mask([masks[i] for i in g]) for g in groups]
    n_actives = jnp.stack([ex.count(a) for a in actives])
    if len(plan) > 1 and rate is not None and isinstance(method, TwoStage):
        pools = _device_pool_sizes(method, ks, n_actives, rate)
    elif len(plan) > 1:
        pools = jax.pure_callback(
            functools.partial(_host_pool_sizes, method),
            jax.ShapeDtypeStruct((len(groups), len(plan) - 1), jnp.int32),
            ks, n_actives, step,
        )
    checks: list[tuple[jax.Array, list[int]]] = []  # (failed?, [code, tensor, count, kind]) in the core's order
    result: list[jax.Array] = [None] * len(weights)  # type: ignore[list-item]
    for gi, group in enumerate(groups):
        w = [weights[i] for i in group]
        dtype = score_dtype([ex.dtype_name(t) for t in w])
        sizes = [int(np.prod(jnp.shape(t), dtype=np.int64)) for t in w]
        active, candidates = actives[gi], actives[gi]
        if isinstance(method, GlobalMP):  # as in the core: the NaN/inf check precedes the reserve
            magnitudes = JAX.flat_score(w, None, dtype)
            checks += _finiteness(magnitudes, "magnitude", group, sizes, active)
            candidates = active & ~_reserved(method, magnitudes, sizes, active)
            available = ex.count(candidates)
            checks.append((available < ks[gi], [UNREACHABLE, group[0], available, 0]))
        for si, kind in enumerate(plan):
            size = ks[gi] if si == len(plan) - 1 else pools[gi, si]
            score = _score(method, kind, w, [grads[i] for i in group] if grads is not None else None, dtype, step)
            if kind != "random":
                checks += _finiteness(score, kind, group, sizes, active)
            candidates = smallest(ex, score, size, candidates)
        kept = ex.split(active & ~candidates, [jnp.shape(masks[i]) for i in group])
        for i, m in zip(group, kept):
            result[i] = m
    status = _first_failure(checks)
    ok = status[0] == OK
    return [jnp.where(ok, new, old) for new, old in zip(result, masks)], status


def _finiteness(score: jax.Array, kind: str, group: list[int], sizes: list[int], active: jax.Array) -> list:
    """One (failed?, status) check per tensor of ``group``: NaN/inf ``kind`` scores among active entries."""
    checks, start = [], 0
    for i, n in zip(group, sizes):
        bad = JAX.nonfinite(score[start : start + n], active[start : start + n])
        checks.append((bad > 0, [NONFINITE, i, bad, KINDS.index(kind)]))
        start += n
    return checks


def _device_pool_sizes(method: TwoStage, ks: jax.Array, n_actives: jax.Array, rate: tuple) -> jax.Array:
    """``TwoStage.pool_size`` on device, in float64 under ``jax.enable_x64`` (IEEE multiply and
    floor: the host's value exactly). Needs a backend with float64 (CPU, GPU)."""
    table, row = rate
    with jax.enable_x64(True):
        r = jnp.asarray(table, jnp.float64)[row]
        k, n = ks.astype(jnp.int64), n_actives.astype(jnp.int64)
        if method.pool_fraction is not None:
            size = jnp.minimum(jnp.maximum(k, jnp.floor(r * n.astype(jnp.float64)).astype(jnp.int64)), n)
        else:
            size = k + jnp.floor(r * (n - k).astype(jnp.float64)).astype(jnp.int64)
        return size.astype(jnp.int32)[:, None]


def pool_rates(method: Method, steps: Sequence[int]) -> np.ndarray | None:
    """The float64 rate of a ``TwoStage`` method at each of ``steps`` (host), else None."""
    if not isinstance(method, TwoStage):
        return None
    rate = method.pool_fraction if method.pool_fraction is not None else method.extra_fraction
    return np.asarray([rate(int(t)) for t in steps], np.float64)  # type: ignore[misc]


def _score(method: Method, kind: str, w: list, g: list | None, dtype: str, step: jax.Array) -> jax.Array:
    if kind == "random":
        n = sum(int(np.prod(jnp.shape(t), dtype=np.int64)) for t in w)
        return jax.pure_callback(
            functools.partial(_host_random, method.seed, n), jax.ShapeDtypeStruct((n,), jnp.int32), step  # type: ignore[attr-defined]
        )
    if kind == "magnitude":
        return JAX.flat_score(w, None, dtype)
    if kind == "gradient":
        return JAX.flat_score(g, None, dtype)  # type: ignore[arg-type]
    return JAX.flat_score(w, g, dtype)


def _reserved(method: GlobalMP, magnitudes: jax.Array, sizes: list[int], active: jax.Array) -> jax.Array:
    """Per tensor, the min(M, active_l) active entries with the largest (|w|, index) (as the core);
    ``magnitudes`` is the group's flat |w| as score bits."""
    m = method.reserve_count(sum(sizes))
    parts, start = [], 0
    for n in sizes:
        act = active[start : start + n]
        n_act = JAX.count(act)
        below = smallest(JAX, magnitudes[start : start + n], n_act - jnp.minimum(m, n_act), act)
        parts.append(act & ~below)
        start += n
    return JAX.flat_mask(parts)


def _first_failure(checks: list[tuple[jax.Array, list[Any]]]) -> jax.Array:
    if not checks:
        return jnp.zeros(4, jnp.int32)
    failed = jnp.stack([c for c, _ in checks])
    infos = jnp.stack([jnp.stack([jnp.asarray(v, jnp.int32) for v in info]) for _, info in checks])
    return jnp.where(jnp.any(failed), infos[jnp.argmax(failed)], jnp.zeros(4, jnp.int32))


def raise_status(status: Any, names: Sequence[str], k: Any = None) -> None:
    """Raise the core's exception for a non-zero ``status`` from ``select_traced``."""
    code, tensor, count, kind = (int(v) for v in np.asarray(status))
    if code == NONFINITE:
        raise NonFiniteScoreError(names[tensor], count, KINDS[kind])
    if code == UNREACHABLE:
        raise UnreachableTargetError(
            f"GlobalMP's min_keep reserves too much in {names[tensor]!r}'s group: only {count} unreserved "
            f"active entries remain, but k={k} must be pruned; lower min_keep or the target sparsity"
        )


# -- select_jit ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _compiled(method_key: str, scope: str) -> Any:
    method = fggp_core.method_from_config(json.loads(method_key))

    def run(weights, grads, masks, k, step):
        return select_traced(method, scope, weights, grads, masks, k, step)

    return jax.jit(run)


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
    """``select`` as one compiled program, ``k`` and ``step`` traced (one compile per shapes).

    Validates on the host like the core, then runs ``select_traced`` under ``jax.jit`` and
    raises the core's exception from its status. Same result as ``fggp_core.select``.
    """
    weights = {n: jnp.asarray(w) for n, w in weights.items()}
    grads = None if grads is None else {n: jnp.asarray(g) for n, g in grads.items()}
    masks = {n: jnp.asarray(m) for n, m in masks.items()}
    names = validate(JAX, method, weights, grads, masks, scope)
    if scope == "global":
        ks: Any = _check_k("k", k, sum(int(JAX.count(masks[n])) for n in names))
    else:
        if not isinstance(k, Mapping) or set(k) != set(names):
            raise fggp_core.ConfigError("k", k, "layerwise scope needs a mapping tensor name -> count for every tensor")
        ks = [_check_k(f"k[{n!r}]", k[n], int(JAX.count(masks[n]))) for n in names]
    method.stages(0, 0, step)  # an annealed rate without a step: the core's ConfigError, raised here
    run = _compiled(json.dumps(method.to_config(), sort_keys=True), scope)
    w = [weights[n] for n in names]
    g = None if grads is None or not method.needs_grads else [grads[n] for n in names]
    new, status = run(w, g, [masks[n] for n in names], jnp.asarray(ks, jnp.int32), jnp.int32(step or 0))
    raise_status(status, names, k)
    return dict(zip(names, new))
