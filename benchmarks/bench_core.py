"""Global FGGP selection in fggp_core against an unordered floor, time and peak memory.

The floor is what any FGGP implementation must at least do, without tie-breaking:
``np.argpartition(|g|, pool)`` for the pool, then ``np.partition(|w[pool]|, k)``.
fggp_core.select adds exact (score, index) tie-breaking, NaN checks and mask bookkeeping.
Peak extra memory is measured with tracemalloc (NumPy reports its buffers to it) and given
in bytes per prunable entry, inputs excluded.

    python benchmarks/bench_core.py [--sizes 1e7 1e8] [--repeat 3]
    python benchmarks/bench_core.py --sizes 1e9 --repeat 1 --no-floor --out benchmarks/results/core_1e9.json

At 10^9 entries the inputs alone take 9 GB and the floor needs 14 more bytes per entry, so
``--no-floor`` times fggp_core alone and also reports the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

import fggp_core as F


def problem(n: int, tensors: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = [n // tensors] * (tensors - 1) + [n - (n // tensors) * (tensors - 1)]
    weights = {f"layer{i}": rng.standard_normal(s, dtype=np.float32) for i, s in enumerate(sizes)}  # float32 draw
    grads = {f"layer{i}": rng.standard_normal(s, dtype=np.float32) for i, s in enumerate(sizes)}
    masks = {f"layer{i}": np.ones(s, dtype=bool) for i, s in enumerate(sizes)}
    return weights, grads, masks


def floor(weights, grads, k, pool):
    g = np.abs(np.concatenate(list(grads.values())))
    idx = np.argpartition(g, pool - 1)[:pool]
    del g
    w = np.abs(np.concatenate(list(weights.values()))[idx])
    return np.partition(w, k - 1)[:k]


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def measure(n: int, repeat: int, with_floor: bool = True) -> dict:
    weights, grads, masks = problem(n)
    k = n // 10
    pool = max(k, math.floor(0.5 * n))
    method = F.FGGP(0.5)
    if not with_floor:
        inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        memory = peak_bytes(lambda: F.select(method, weights, grads, masks, k))
        ours = best_of(lambda: F.select(method, weights, grads, masks, k), repeat)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {
            "n": n, "k": k, "fggp_core_s": round(ours, 3),
            "peak_extra_bytes_per_entry": round(memory / n, 2),
            "peak_rss_gib": round(peak / 2**30, 2), "inputs_rss_gib": round(inputs / 2**30, 2),
        }
    ours = best_of(lambda: F.select(method, weights, grads, masks, k), repeat)
    base = best_of(lambda: floor(weights, grads, k, pool), repeat)
    memory = peak_bytes(lambda: F.select(method, weights, grads, masks, k))
    floor_memory = peak_bytes(lambda: floor(weights, grads, k, pool))
    return {
        "n": n,
        "k": k,
        "fggp_core_s": round(ours, 4),
        "floor_s": round(base, 4),
        "time_ratio": round(ours / base, 3),
        "peak_extra_bytes_per_entry": round(memory / n, 2),
        "floor_peak_extra_bytes_per_entry": round(floor_memory / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e7, 1e8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-floor", action="store_true", help="time fggp_core alone (for 10^9 entries)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "core.json")
    args = parser.parse_args()
    rows = [measure(int(n), args.repeat, not args.no_floor) for n in args.sizes]
    if args.no_floor:
        for r in rows:
            print(r)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "global FGGP selection alone, float32", "rows": rows}, indent=2))
        return
    print(f"{'N':>12} {'fggp_core s':>12} {'floor s':>9} {'ratio':>7} {'peak B/entry':>13} {'floor B/entry':>14}")
    for r in rows:
        print(
            f"{r['n']:>12,} {r['fggp_core_s']:>12.3f} {r['floor_s']:>9.3f} {r['time_ratio']:>7.2f} "
            f"{r['peak_extra_bytes_per_entry']:>13.2f} {r['floor_peak_extra_bytes_per_entry']:>14.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    title = "global FGGP selection, float32, rate 0.5, k = N/10"
    args.out.write_text(json.dumps({"benchmark": title, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
