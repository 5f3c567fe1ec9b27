"""Which entries to prune: one algorithm, written once against the backend primitives.

``smallest(keys, k)`` is the only selection: the ``k`` candidates with the smallest
``(key, canonical index)`` pairs over a list of flat key arrays (one per tensor, in canonical
order; non-candidates hold the +inf key). The k-th key is found by radix select: a few
passes, each a histogram of one digit summed over tensors (and over devices: ``reduce``),
never a concatenation of all scores. Everything below the k-th key is taken, then the
lowest-index entries equal to it until exactly ``k`` are taken.

``prune_group`` runs a method's ``plan()`` (stages of ``smallest``) on one selection group.
It never branches on a value and never raises: counts stay backend scalars and problems
come back as a ``Status``, so the same code runs eagerly and inside ``jax.jit``. Only the
entry points (``select`` here, the adapters' event functions) turn a status into an
exception, with ``raise_status``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .backend import FLOAT_DTYPES, NUMPY, Backend, key_bits, score_dtype
from .errors import ConfigError, InputMismatchError, NonFiniteScoreError, UnreachableTargetError
from .methods import Method, Stage
from .rules import check_gupta, gupta_select, regrow

__all__ = [
    "select",
    "smallest",
    "prune_group",
    "Status",
    "raise_status",
    "check_counts",
    "SCOPES",
    "random_scores",
    "OK",
    "NONFINITE",
    "UNREACHABLE",
]

SCOPES = ("global", "layerwise")
OK, NONFINITE, UNREACHABLE = 0, 1, 2


class Status(NamedTuple):
    """What went wrong first, as backend integer scalars (all 0 when nothing did).

    ``code``: OK, NONFINITE or UNREACHABLE. ``tensor``: index (canonical order) of the tensor
    concerned, or of the group's first tensor. ``count``: the non-finite entries, or the
    candidates available. ``stage``: the index of the stage in the method's plan.
    """

    code: Any
    tensor: Any
    count: Any
    stage: Any


def random_scores(seed: int, step: int | None, n: int) -> np.ndarray:
    """The host-side uniform draw of ``Random(seed)`` at ``step``: float32 in [0, 1), size n."""
    return np.random.default_rng([seed, 0 if step is None else int(step)]).random(n, dtype=np.float32)


def _digits(bits: int, width: int) -> list[tuple[int, int]]:
    """(shift, width) of each radix digit of a ``bits``-bit key, most significant first."""
    out, top = [], bits
    while top > 0:
        w = min(width, top)
        out.append((top - w, w))
        top -= w
    return out


def kth_key(be: Backend, keys: Sequence[Any], k: Any, score: str, tensors: Sequence[int] | None = None) -> Any:
    """The k-th smallest (1-based) key over all of ``keys``; -1 when ``k == 0``.

    ``tensors``: the canonical index of each key array (default 0, 1, ...; for sharded tensors)."""
    tensors = range(len(keys)) if tensors is None else tensors
    prefix, rank = be.scalar(0, keys[0]), k
    for shift, width in _digits(key_bits(score), be.digit_bits):
        histogram = be.reduce([be.histogram(x, shift, width, prefix) for x in keys], tensors)
        digit, rank = be.pick(histogram, rank)
        prefix = prefix | (digit * (1 << shift))  # not <<: TensorFlow tensors have no shift operators
    return be.where(k > 0, prefix, be.scalar(-1, keys[0]))


def smallest(be: Backend, keys: Sequence[Any], k: Any, score: str, tensors: Sequence[int] | None = None) -> list[Any]:
    """Flat masks of the ``k`` smallest (key, canonical index) entries over ``keys``.

    ``tensors``: the canonical index of each key array (default 0, 1, ...). Entries outside the candidates must
    hold the +inf key (``be.exclude``). Requires ``0 <= k <= candidates`` and finite candidate
    keys; otherwise the result is unspecified (``prune_group`` reports that case in its
    status instead). Ties at the k-th key go to the lowest canonical indices: earlier tensors
    first, then, within a tensor, devices holding earlier blocks of it, then C order.
    """
    tensors = range(len(keys)) if tensors is None else tensors
    v = be.as_key(kth_key(be, keys, k, score, tensors), keys[0])
    below = [x < v for x in keys]
    need = k - be.reduce([be.count(b) for b in below], tensors)
    # tie counts of every tensor in one tally; the tie masks are made again below rather than
    # kept (one byte per entry less at the peak)
    counts, earlier = be.tally([be.count(x == v) for x in keys], tensors)
    before = be.running(counts)[0]
    for i, x in enumerate(keys):
        b = below[i]
        b |= be.first_true(x == v, need - before[i] - earlier[i])  # this block's share of the ties (in place)
        below[i] = b  # immutable arrays (JAX, TensorFlow) rebind instead
    return below


def _fail(be: Backend, status: Status, failed: Any, code: int, tensor: Any, count: Any, stage: int) -> Status:
    """``status`` unless it is OK and ``failed``: then the new failure (the first one wins)."""
    take = (status.code == OK) & failed
    new = (code, tensor, count, stage)
    return Status(*(be.where(take, be.scalar(n, count) if isinstance(n, int) else n, o) for n, o in zip(new, status)))


def _size(be: Backend, stage: Stage, k: Any, n_active: Any, rate: Any) -> Any:
    if stage.size == "pool":
        pool = be.floor_mul(rate, n_active)
        return be.minimum(be.where(pool > k, pool, k), n_active)
    if stage.size == "extra":
        return k + be.floor_mul(rate, n_active - k)
    return k


def prune_group(
    be: Backend,
    plan: Sequence[Stage],
    weights: Sequence[Any],
    grads: Sequence[Any] | None,
    active: Sequence[Any],
    k: Any,
    *,
    rate: Any = 0.0,
    reserve: int = 0,
    random: Any = None,
    first: int = 0,
    tensors: Sequence[int] | None = None,
) -> tuple[list[Any], Status]:
    """Flat masks of the ``k`` entries of ``active`` that the stages of ``plan`` prune.

    One selection group: ``weights``, ``grads`` (None when no stage needs them) and the flat
    bool ``active`` masks are per tensor, in canonical order; ``k`` is a count. ``rate``: the
    float64 rate of "pool"/"extra" stages; ``reserve``: the per-tensor count of a "reserve"
    stage; ``random``: a function ``(sizes, tensors) -> keys per tensor`` for "random" stages;
    ``first``: the canonical index of the group's first tensor (for the status); ``tensors``:
    the canonical index of each tensor (default: consecutive from ``first``).
    Nothing is raised and nothing is modified: check the returned ``Status``.
    """
    tensors = list(range(first, first + len(weights))) if tensors is None else list(tensors)
    first = tensors[0]
    score = score_dtype([be.dtype_name(w) for w in weights])
    status = Status(*(be.scalar(0, k) for _ in range(4)))
    n_act = be.tally([be.count(a) for a in active], tensors)[0]
    n_active = be.running(n_act)[1]
    candidates = list(active)
    available = n_active
    spare: list[Any] = [None] * len(weights)  # the previous stage's key buffers, reused where the backend can
    for si, stage in enumerate(plan):
        size = _size(be, stage, k, n_active, rate)
        status = _fail(be, status, size > available, UNREACHABLE, first, available, si)
        if stage.score == "random":
            keys = random([int(np.prod(be.shape(w), dtype=np.int64)) for w in weights], weights)
        else:
            keys = []
            for i, w in enumerate(weights):
                if stage.score == "magnitude":
                    x = be.keys(w, None, score, out=spare[i])
                elif stage.score == "gradient":
                    x = be.keys(grads[i], None, score, out=spare[i])  # type: ignore[index]
                else:
                    x = be.keys(w, grads[i], score, out=spare[i])  # type: ignore[index]
                keys.append(x)
            bad = be.tally([be.nonfinite(x, a) for x, a in zip(keys, active)], tensors)[0]
            for i, b in enumerate(bad):
                status = _fail(be, status, b > 0, NONFINITE, tensors[i], b, si)
        keys = [be.exclude(x, c) for x, c in zip(keys, candidates)]
        if stage.size == "gupta":  # GlobalMP(rule="gupta"): per-tensor counts of the authors' rule
            candidates, feasible = gupta_select(be, keys, n_act, size, reserve, score, tensors)
            status = _fail(be, status, ~feasible, UNREACHABLE, first, size, si)
            available = size
        elif stage.per_tensor:
            candidates = [
                smallest(be, [x], n - be.minimum(be.scalar(reserve, n), n), score, [t])[0]
                for x, n, t in zip(keys, n_act, tensors)
            ]
            available = be.reduce([be.count(c) for c in candidates], tensors)
        else:
            candidates = smallest(be, keys, size, score, tensors)
            available = size
        spare = keys
    return candidates, status


def raise_status(status: Status | Sequence[Any], names: Sequence[str], method: Method, k: Any = None) -> None:
    """Raise the exception a non-OK ``status`` of ``method``'s selection stands for; return when OK."""
    code, tensor, count, stage = (int(v) for v in status)  # int() reads a scalar on any device
    plan = method.plan()
    if code == NONFINITE:
        raise NonFiniteScoreError(names[tensor], count, plan[stage].score)
    if code == UNREACHABLE:
        if plan[stage].size == "gupta":
            raise UnreachableTargetError(
                f"min_keep={getattr(method, 'min_keep', None)!r} is infeasible with rule='gupta' in "
                f"{names[tensor]!r}'s group: clamping every layer to keep min_keep leaves fewer than k={k} "
                "prunable entries (the authors' loop would not terminate); lower min_keep or the target sparsity"
            )
        if any(s.per_tensor for s in plan[:stage]):
            raise UnreachableTargetError(
                f"min_keep={getattr(method, 'min_keep', None)!r} reserves too much in {names[tensor]!r}'s group: "
                f"only {count} unreserved active "
                f"entries remain, but k={k} must be pruned; lower min_keep or the target sparsity"
            )
        raise UnreachableTargetError(f"k={k} exceeds the {count} active entries it can prune")


def check_counts(be: Backend, sizes: Sequence[int]) -> None:
    """Refuse a problem whose entry count the backend's counts cannot hold (e.g. JAX without x64)."""
    total = int(sum(sizes))
    if total > be.max_count:
        raise ConfigError(
            "weights", f"{total} prunable entries",
            f"the {be.name} backend counts with at most {be.max_count} (enable 64-bit integers, "
            "e.g. jax.config.update('jax_enable_x64', True), or prune fewer entries per selection)",
        )


def validate(
    be: Backend,
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
        shape = be.shape(weights[name])
        if be.dtype_name(weights[name]) not in FLOAT_DTYPES:
            raise InputMismatchError(
                f"weights[{name!r}] has dtype {be.dtype_name(weights[name])}; allowed: {FLOAT_DTYPES}"
            )
        if be.shape(masks[name]) != shape:
            raise InputMismatchError(f"masks[{name!r}] has shape {be.shape(masks[name])}, weights {shape}")
        if be.dtype_name(masks[name]) != "bool":
            raise InputMismatchError(f"masks[{name!r}] has dtype {be.dtype_name(masks[name])}; masks must be bool")
        if method.needs_grads:
            g = grads[name]  # type: ignore[index]
            if be.shape(g) != shape:
                raise InputMismatchError(f"grads[{name!r}] has shape {be.shape(g)}, weights {shape}")
            if be.dtype_name(g) not in FLOAT_DTYPES:
                raise InputMismatchError(f"grads[{name!r}] has dtype {be.dtype_name(g)}; allowed: {FLOAT_DTYPES}")
    check_counts(be, [int(np.prod(be.shape(weights[n]), dtype=np.int64)) for n in names])
    return names


def check_k(argument: str, k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ConfigError(argument, k, "must be an integer >= 0")
    return int(k)


def groups_of(names: list[str], scope: str, k: int | Mapping[str, int]) -> list[tuple[list[int], int]]:
    """The selection groups (tensor indices, checked count) of a scope."""
    if scope == "global":
        return [(list(range(len(names))), check_k("k", k))]
    if not isinstance(k, Mapping) or set(k) != set(names):
        raise ConfigError("k", k, "layerwise scope needs a mapping tensor name -> count for every tensor")
    return [([i], check_k(f"k[{n!r}]", k[n])) for i, n in enumerate(names)]


def host_random(be: Backend, seed: int, step: Any):
    """The "random" stage's keys: the host draw ``random_scores(seed, step, n)``, cut per tensor
    of the group (``like``); a sharded backend's ``host_keys`` keeps this device's block."""

    def keys(sizes: list[int], like: Sequence[Any]) -> list[Any]:
        draw = random_scores(seed, None if step is None else int(step), sum(sizes))
        out, start = [], 0
        for n, t in zip(sizes, like):
            out.append(be.host_keys(draw[start : start + n], t))
            start += n
        return out

    return keys


def run_groups(
    be: Backend,
    method: Method,
    weights: Sequence[Any],
    grads: Sequence[Any] | None,
    masks: Sequence[Any],
    groups: Sequence[tuple[list[int], Any]],
    *,
    rate: Any,
    step: Any,
    random: Any = None,
) -> tuple[list[Any], Status]:
    """New flat masks (active and not pruned) for every tensor, and the first failure's status.

    ``groups``: (tensor indices, k) per selection group. On a failure the returned masks are
    unspecified: keep the old ones.
    """
    sizes = [int(np.prod(be.shape(w), dtype=np.int64)) for w in weights]
    plan = [s for s in method.plan() if s.size != "regrow"]  # GraNet's regrowth runs after the group
    if any(s.size == "gupta" for s in plan):
        check_gupta(be, max(sum(sizes[i] for i in group) for group, _ in groups))
    random = random or host_random(be, getattr(method, "seed", 0), step)
    result: list[Any] = [None] * len(weights)
    status = None
    for group, k in groups:
        active = [be.flat(masks[i]) for i in group]
        pruned, group_status = prune_group(
            be, plan,
            [weights[i] for i in group],
            None if grads is None else [grads[i] for i in group],
            active, k,
            rate=rate, reserve=method.reserve_count(sum(sizes[i] for i in group)), random=random, tensors=group,
        )
        for i, a, p in zip(group, active, pruned):
            kept = ~p
            kept &= a
            result[i] = kept
        if method.regrows:  # GraNet: per tensor, prune a fraction more and regrow as many by |g|
            grown, bad = regrow(
                be, [weights[i] for i in group], [grads[i] for i in group], [result[i] for i in group], rate, group
            )
            for i, b, kept in zip(group, bad, grown):
                result[i] = kept
                group_status = _fail(be, group_status, b > 0, NONFINITE, i, b, len(plan))
        status = group_status if status is None else _fail(be, status, group_status.code != OK, *group_status)
    return result, status  # type: ignore[return-value]


def select(
    method: Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    *,
    scope: str = "global",
    step: int | None = None,
    backend: Backend = NUMPY,
    executor: Backend | None = None,
) -> dict[str, Any]:
    """New masks with exactly ``k`` more entries pruned by ``method``; never un-prunes, except
    ``GraNet``, which then swaps equal numbers per tensor (the count stays exact), and
    ``GlobalMP(rule="gupta")``, which rounds down per tensor (it may prune fewer).

    ``weights``, ``grads`` and ``masks`` map tensor names to arrays in canonical order (the
    order of ``weights``); masks are boolean (True = kept). ``grads`` may be None for methods
    that need none. ``scope="global"``: one selection over all tensors, ``k`` an int.
    ``scope="layerwise"``: one selection per tensor, ``k`` a mapping name -> count. ``step``
    feeds annealed rates and ``Random``. ``backend``: where the selection runs (``executor``
    is its old name). The inputs are never modified.
    """
    be = executor if executor is not None else backend
    names, groups, rate = check_problem(be, method, weights, grads, masks, k, scope, step)
    w = [weights[n] for n in names]
    g = None if grads is None or not method.needs_grads else [grads[n] for n in names]
    m = [masks[n] for n in names]
    ks = [(group, be.scalar(count, m[group[0]])) for group, count in groups]
    new, status = run_groups(be, method, w, g, m, ks, rate=rate, step=step)
    raise_failure(status, names, method, k, scope)
    return {n: be.unflat(x, be.shape(masks[n])) for n, x in zip(names, new)}


def check_problem(
    be: Backend,
    method: Method,
    weights: Mapping[str, Any],
    grads: Mapping[str, Any] | None,
    masks: Mapping[str, Any],
    k: int | Mapping[str, int],
    scope: str,
    step: int | None,
) -> tuple[list[str], list[tuple[list[int], int]], float]:
    """The host checks of every entry point (``select``, ``fggp.jax.select_jit``): the canonical
    names, the selection groups (tensor indices, count) and the method's rate at ``step``."""
    names = validate(be, method, weights, grads, masks, scope)
    groups = groups_of(names, scope, k)
    for group, count in groups:  # checked on the host first, with the argument's own name
        n_active = sum(int(n) for n in be.tally([be.count(be.flat(masks[names[i]])) for i in group], group)[0])
        if count > n_active:
            argument = "k" if scope == "global" else f"k[{names[group[0]]!r}]"
            raise UnreachableTargetError(f"{argument}={count} exceeds the {n_active} active entries it can prune")
    return names, groups, method.event_rate(step)  # an annealed rate without a step is a ConfigError


def raise_failure(status: Status, names: Sequence[str], method: Method, k: int | Mapping[str, int], scope: str) -> None:
    """Raise the exception of a failed ``run_groups`` status (with the failing group's ``k``)."""
    if int(status.code) != OK:
        group_k = k if scope == "global" else k[names[int(status.tensor)]]  # type: ignore[index]
        raise_status(status, names, method, group_k)
