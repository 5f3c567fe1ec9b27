"""A brute-force reference for SPEC's selection: a full stable sort by (score, canonical index).

Deliberately written from SPEC's formulas, sharing no code with fggp_core's selection, so the
property tests compare two independent implementations.
"""

from __future__ import annotations

import math

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
    return np.abs(g) if kind == "gradient" else np.abs(w * g)


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
        mags = score("magnitude")
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


def select(method, weights, grads, masks, k, *, scope="global", step=None):
    names = list(weights)
    groups = [(names, k)] if scope == "global" else [([n], k[n]) for n in names]
    out = {}
    for group, count in groups:
        active = np.concatenate([masks[n].reshape(-1) for n in group])
        if count > active.sum():
            raise F.UnreachableTargetError("oracle: k exceeds the active entries")
        kept = active & ~_prune(method, group, weights, grads, active, count, step)
        start = 0
        for n in group:
            out[n] = kept[start : start + masks[n].size].reshape(masks[n].shape)
            start += masks[n].size
    return {n: out[n] for n in names}
