"""fggp.jax figures for issues 14/15: compile time of ``wrap`` vs the inner optimizer by number of
prunable leaves, selection memory per prunable entry, and the step between events (HLO check and
CPU time, paired with the inner optimizer).

    python benchmarks/jax_compile.py [--quick] [--sizes 50,200,1000] [--timeout 600] [--skip-compile]

``--quick``: 200 leaves only, no ``between`` variant, fewer timing rounds (about 1 minute).

Compile: each (variant, leaves) runs in its own subprocess (JAX keeps every executable), params are
``leaves`` dense layers of 8x8 kernels plus biases, the program is ``jax.jit(tx.update)`` lowered
and compiled (seconds for lowering and for XLA's compile are reported separately). Variants:
``adam`` (the inner optimizer alone), ``wrap`` (the default program, ``lax.cond``), ``between``
(``fggp_event=False``: the program run between events when the host passes the flag).
Memory: ``compiled.memory_analysis().temp_size_in_bytes`` of the event's selection
(``run_traced``, FGGP global) per prunable entry, i.e. bytes beyond inputs and outputs.
Step: HLO of the between-events program (no ``conditional``, no host transfer) and the CPU time
of a jitted Adam step on an MLP 784-1024-1024-10 (batch 256), variants alternated in rounds.
Writes benchmarks/results/jax_compile.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time, jax, jax.numpy as jnp, optax
import fggp.jax as fj, fggp_core as F
n, variant = int(sys.argv[1]), sys.argv[2]
params = {f"l{i:04d}": {"kernel": jnp.full((8, 8), i + 1.0), "bias": jnp.zeros(8)} for i in range(n)}
schedule = F.PolynomialSchedule(0.0, 0.8, begin_step=2, end_step=14, frequency=3)
tx = optax.adam(1e-3) if variant == "adam" else fj.wrap(optax.adam(1e-3), F.FGGP(0.5), schedule)
state = tx.init(params)
kwargs = {"fggp_event": False} if variant == "between" else {}
fn = jax.jit(tx.update, static_argnames=("fggp_event",) if kwargs else ())
t0 = time.perf_counter(); lowered = fn.lower(params, state, params, **kwargs)
t1 = time.perf_counter(); lowered.compile(); t2 = time.perf_counter()
print(json.dumps({"lower_s": round(t1 - t0, 3), "compile_s": round(t2 - t1, 3)}))
"""

HOST_OPS = re.compile(r" (conditional|custom-call|send|recv|outfeed|infeed)\(")


def compile_times(sizes: list[int], timeout: float, variants=("adam", "between", "wrap")) -> list[dict]:
    rows = []
    for n in sizes:
        for variant in variants:
            start = time.perf_counter()
            try:
                out = subprocess.run([sys.executable, "-c", CHILD, str(n), variant], capture_output=True, text=True,
                                     timeout=timeout, check=True)
                row = {"leaves": n, "variant": variant, **json.loads(out.stdout.strip().splitlines()[-1])}
            except subprocess.TimeoutExpired:
                row = {"leaves": n, "variant": variant, "compile_s": None, "timeout_s": timeout}
            row["wall_s"] = round(time.perf_counter() - start, 2)
            print(row, flush=True)
            rows.append(row)
    return rows


def selection_memory(sizes=(10**7,), leaves=(1, 100)) -> list[dict]:
    import jax
    import jax.numpy as jnp

    import fggp_core as F
    from fggp.jax import run_traced
    from fggp.jax.backend import rate_bits

    rows = []
    for n in sizes:
        for count in leaves:
            shape = (count, n // count)
            w = [jax.ShapeDtypeStruct(shape[1:], jnp.float32)] * count
            m = [jax.ShapeDtypeStruct(shape[1:], jnp.bool_)] * count

            def fn(w, g, m, ks):
                return run_traced(F.FGGP(0.5), "global", w, g, m, ks, rate_bits(0.5), jnp.int32(1))

            compiled = jax.jit(fn).lower(w, w, m, jax.ShapeDtypeStruct((1,), jnp.int32)).compile()
            temp = compiled.memory_analysis().temp_size_in_bytes
            rows.append({"entries": n, "leaves": count, "temp_bytes": int(temp), "bytes_per_entry": round(temp / n, 2)})
            print(rows[-1], flush=True)
    return rows


def step_figures(rounds: int = 7, steps: int = 20) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import fggp.jax as fj
    import fggp_core as F

    rng = np.random.default_rng(0)
    sizes = (784, 1024, 1024, 10)
    params = {f"d{i}": {"kernel": jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32),
                        "bias": jnp.zeros(b)} for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}
    x = jnp.asarray(rng.standard_normal((256, 784)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 256))

    def loss(p):
        h = x
        for i in range(3):
            h = h @ p[f"d{i}"]["kernel"] + p[f"d{i}"]["bias"]
            h = jax.nn.relu(h) if i < 2 else h
        return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

    never = F.PolynomialSchedule(0.0, 0.9, begin_step=10**8, end_step=10**8 + 10, frequency=1)
    variants = {
        "adam": (optax.adam(1e-3), {}),
        "wrap": (fj.wrap(optax.adam(1e-3), F.FGGP(0.5), never), {}),
        "wrap_host_flag": (fj.wrap(optax.adam(1e-3), F.FGGP(0.5), never), {"fggp_event": False}),
    }
    steps_fn, states, hlo = {}, {}, {}
    for name, (tx, kwargs) in variants.items():
        def step(p, s, tx=tx, kwargs=kwargs):
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p, **kwargs)
            return optax.apply_updates(p, u), s

        steps_fn[name] = jax.jit(step)
        states[name] = tx.init(params)
        hlo[name] = sorted(set(HOST_OPS.findall(steps_fn[name].lower(params, states[name]).compile().as_text())))
    times: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(rounds):
        for name in variants:
            p, s = params, states[name]
            p, s = steps_fn[name](p, s)
            jax.block_until_ready(p)
            t = time.perf_counter()
            for _ in range(steps):
                p, s = steps_fn[name](p, s)
            jax.block_until_ready(p)
            times[name].append((time.perf_counter() - t) / steps * 1e3)
    out = {"hlo_host_ops": hlo, "ms_per_step_median": {n: round(statistics.median(v), 3) for n, v in times.items()},
           "ms_per_step_min": {n: round(min(v), 3) for n, v in times.items()}}
    for n in ("wrap", "wrap_host_flag"):
        out[f"{n}_over_adam_median"] = round(statistics.median(times[n]) / statistics.median(times["adam"]), 3)
        out[f"{n}_over_adam_min"] = round(min(times[n]) / min(times["adam"]), 3)
    print(out, flush=True)
    return out


def summary(result: dict) -> list[dict]:
    """The README rows (``python -m benchmarks`` reads ``"summary"``)."""
    rows = []
    for r in result["selection_memory"]:
        rows.append({"area": "jax", "figure": f"FGGP global selection memory, {r['entries']:.0e} entries in "
                     f"{r['leaves']} leaves (XLA temp buffers, CPU)", "measured": f"{r['bytes_per_entry']:.1f} B/entry",
                     "target": "<= 12 B/entry", "met": r["bytes_per_entry"] <= 12})
    by = {(r["leaves"], r["variant"]): r for r in result.get("compile", [])}
    for n in sorted({n for n, _ in by}):
        adam, wrap = by.get((n, "adam")), by.get((n, "wrap"))
        if not adam or not wrap:
            continue
        total = [None if r.get("compile_s") is None else r["lower_s"] + r["compile_s"] for r in (adam, wrap)]
        if total[1] is None:
            measured, ratio = f"over {wrap['timeout_s']:.0f} s (timeout) vs adam {total[0]:.1f} s", None
        else:
            ratio = total[1] / total[0]
            measured = f"{total[1]:.1f} s vs adam {total[0]:.1f} s, x{ratio:.1f}"
        rows.append({"area": "jax", "figure": f"compile time of jit(wrap(adam).update), {n} prunable leaves "
                     "(trace + XLA compile, CPU)", "measured": measured,
                     "target": "<= 3x inner optimizer" if n >= 1000 else "-",
                     "met": (ratio is not None and ratio <= 3) if n >= 1000 else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="200 leaves, no 'between' variant, fewer rounds")
    parser.add_argument("--sizes", default=None, help="prunable leaves, comma-separated (default 50,200,1000)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    import jax

    sizes = args.sizes or ("200" if args.quick else "50,200,1000")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(), "device": str(jax.devices()[0]),
        "command": " ".join(["python", *sys.argv]),
        "selection_memory": selection_memory(),
        "step_between_events": step_figures(rounds=3 if args.quick else 7),
    }
    if not args.skip_compile:
        variants = ("adam", "wrap") if args.quick else ("adam", "between", "wrap")
        result["compile"] = compile_times([int(s) for s in sizes.split(",")], args.timeout, variants)
    result["summary"] = summary(result)
    path = Path(__file__).parent / "results" / "jax_compile.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
