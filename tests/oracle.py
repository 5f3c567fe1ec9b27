"""A brute-force reference for SPEC's selection: a full stable sort by (score, canonical index).

Deliberately written from SPEC's formulas, sharing no code with fggp_core's selection, so the
property tests compare two independent implementations.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

import fggp_core as F


def _scores(kind, names, weights, grads, seed, step):
    dtype = np.float64 if any(weights[n].dtype == np.float64 for n in names) else np.float32
    w = np.concatenate([weights[n].astype(dtype).reshape(-1) for n in names])
    if kind == "magnitude":
        return np.abs(w)
    if kind == "random":
        return np.random.default_rng([seed, 0 if step is None else step]).random(w.size, dtype=np.float32)
    g = np.concatenate([grads[n].astype(dtype).reshape(-1) for n in names])
    if kind == "gradient":
        return np.abs(g)
    with np.errstate(invalid="ignore", over="ignore"):  # IEEE products (inf * 0 is NaN): no warning
        return np.abs(w * g)


def smallest(score: np.ndarray, k: int, among: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(among)
    order = np.lexsort((idx, score[idx]))  # sort by score, then by index: the one total order
    out = np.zeros(score.size, dtype=bool)
    out[idx[order[:k]]] = True
    return out


def _prune(method, names, weights, grads, active, k, step):
    def score(kind):
        s = _scores(kind, names, weights, grads, getattr(method, "seed", 0), step)
        start = 0
        for n in names:
            size = weights[n].size
            bad = int(np.count_nonzero(~np.isfinite(s[start : start + size]) & active[start : start + size]))
            if bad:
                raise F.NonFiniteScoreError(n, bad, kind)
            start += size
        return s

    n_active = int(active.sum())
    if isinstance(method, F.GlobalMP):
        total = sum(weights[n].size for n in names)
        m = method.min_keep if isinstance(method.min_keep, int) else math.floor(method.min_keep * total)
        m = max(m, 1)  # Global MP never empties a tensor
        mags = score("magnitude")
        if method.rule == "gupta":
            return _gupta(names, weights, mags, active, k, m)
        reserved = np.zeros_like(active)
        start = 0
        for n in names:
            size = weights[n].size
            idx = start + np.flatnonzero(active[start : start + size])
            order = np.lexsort((idx, mags[idx]))
            reserved[idx[order][len(idx) - min(m, len(idx)) :]] = True  # the largest, ties to higher index
            start += size
        candidates = active & ~reserved
        if candidates.sum() < k:
            raise F.UnreachableTargetError("oracle: min_keep makes the target unreachable")
        return smallest(mags, k, candidates)
    if isinstance(method, F.TwoStage):
        if method.pool_fraction is not None:
            size = min(max(k, math.floor(method.pool_fraction(step) * n_active)), n_active)
        else:
            size = k + math.floor(method.extra_fraction(step) * (n_active - k))
        pool = smallest(score(method.first), size, active)
        return smallest(score(method.second), k, pool)
    return smallest(score(method.score), k, active)


def _segments(names, weights):
    start = 0
    for n in names:
        yield n, slice(start, start + weights[n].size)
        start += weights[n].size


def _gupta(names, weights, mags, active, k, m):
    """The authors' prune_withMT.py in exact fractions: per-layer sparsities from global magnitude
    pruning; layers of at most m entries left alone; clamp every layer keeping fewer than m to m and
    rescale the others' sparsities until nothing changes; each layer then prunes int(s_l * n_l)."""
    first = smallest(mags, k, active)
    segs = [s for _, s in _segments(names, weights)]
    n = [int(active[s].sum()) for s in segs]
    c = [int(first[s].sum()) for s in segs]
    clamped: set[int] = set()
    while True:
        free = [i for i in range(len(n)) if n[i] > m and i not in clamped]
        budget = k - sum(n[i] - m for i in clamped)
        weight = sum(c[i] for i in free)
        if weight == 0:
            if budget > 0:
                raise F.UnreachableTargetError("oracle: the gupta rule cannot terminate")
            scale = Fraction(0)
            break
        scale = Fraction(budget, weight)
        grow = {i for i in free if c[i] * scale > n[i] - m}
        if not grow:
            break
        clamped |= grow
    out = np.zeros_like(active)
    for i, s in enumerate(segs):
        count = n[i] - m if i in clamped else (math.floor(c[i] * scale) if n[i] > m else 0)
        local = np.zeros_like(active)
        local[s] = active[s]
        out |= smallest(mags, count, local)
    return out


def _granet_regrow(method, names, weights, grads, kept, step):
    """GraNet's truncate_weights: per layer remove ceil(r * nnz) kept entries by |w|, then turn on
    as many pruned entries by largest |g|, ties to the lower index."""
    rate = method.rate_at(step)
    out = kept.copy()
    for n, s in _segments(names, weights):
        dtype = np.float64 if weights[n].dtype == np.float64 else np.float32
        w = np.abs(weights[n].astype(dtype).reshape(-1))
        g = np.abs(grads[n].astype(dtype).reshape(-1))
        m = kept[s].copy()
        r = math.ceil(rate * int(m.sum()))
        m &= ~smallest(w, r, m)
        pruned = ~m
        bad = int(np.count_nonzero(~np.isfinite(g) & pruned))
        if bad:
            raise F.NonFiniteScoreError(n, bad, "gradient")
        idx = np.flatnonzero(pruned)
        order = np.lexsort((idx, -g[idx]))
        m[idx[order[:r]]] = True
        out[s] = m
    return out


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    names = list(weights)
    groups = [(names, k)] if scope == "global" else [([n], k[n]) for n in names]
    out = {}
    for group, count in groups:
        active = np.concatenate([masks[n].reshape(-1) for n in group])
        if count > active.sum():
            raise F.UnreachableTargetError("oracle: k exceeds the active entries")
        kept = active & ~_prune(method, group, weights, grads, active, count, step)
        if isinstance(method, F.GraNet):
            kept = _granet_regrow(method, group, weights, grads, kept, step)
        start = 0
        for n in group:
            out[n] = kept[start : start + masks[n].size].reshape(masks[n].shape)
            start += masks[n].size
    return {n: out[n] for n in names}
