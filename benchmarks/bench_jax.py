"""fggp.jax figures: jitted step time with the wrapper between events vs the inner optimizer
alone (target <= 1.05x), and the cost of one event at 1e6 and 1e7 prunable weights.
"ratio" compares medians over rounds; "ratio_of_fastest_rounds" the least disturbed rounds
(on a shared machine the latter is the steadier figure).

    python benchmarks/bench_jax.py [--quick]

Step time: an MLP (784-1024-1024-10, 1.8M params, batch 256) trained with Adam, the whole
train step (forward, backward, update, apply) under ``jax.jit``; the two variants alternate in
rounds and the median per-step time of each is compared. Event cost: one jitted ``update``
(FGGP, global) at an event step minus the same compiled update at a non-event step, on
params of 1e6 and 1e7 prunable weights (one 1000 x n/1000 kernel). Writes its run into
benchmarks/results/jax.json, one entry per device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fggp.jax as fj
import fggp_core as F

NEVER = F.PolynomialSchedule(0.0, 0.9, begin_step=10**8, end_step=10**8 + 10, frequency=1)


def mlp(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"dense{i}": {
            "kernel": jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32),
            "bias": jnp.zeros(b, jnp.float32),
        }
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    }


def loss(params, x, y):
    for i in range(len(params)):
        x = x @ params[f"dense{i}"]["kernel"] + params[f"dense{i}"]["bias"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return optax.softmax_cross_entropy_with_integer_labels(x, y).mean()


def stepper(tx, donate: bool = False, **update_kwargs):
    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params, **update_kwargs)
        return optax.apply_updates(params, updates), state

    # donated: params and optimizer state updated in place, as training loops usually jit their step
    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def step_times(rounds: int, steps: int, batch: int = 256) -> dict[str, float]:
    """Median seconds per jitted train step, variants interleaved in rounds: the inner optimizer and the
    wrapped one, each with its inputs kept and donated; and, donated, the wrapped step passed
    ``fggp_event=False`` (the host flag: no conditional in the program)."""
    sizes = (784, 1024, 1024, 10)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((batch, 784)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch))
    variants = {
        "inner": (optax.adam(1e-3), False, {}),
        "wrapped": (fj.wrap(optax.adam(1e-3), F.FGGP(0.5), NEVER), False, {}),
        "inner donated": (optax.adam(1e-3), True, {}),
        "wrapped donated": (fj.wrap(optax.adam(1e-3), F.FGGP(0.5), NEVER), True, {}),
        "wrapped donated, host flag": (fj.wrap(optax.adam(1e-3), F.FGGP(0.5), NEVER), True, {"fggp_event": False}),
    }
    runs = {}
    for name, (tx, donate, kwargs) in variants.items():
        params = mlp(sizes)
        runs[name] = [stepper(tx, donate, **kwargs), params, tx.init(params)]
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds + 1):
        for name, run in runs.items():
            step, params, state = run
            start = time.perf_counter()
            for _ in range(steps):
                params, state = step(params, state, x, y)
            jax.block_until_ready(params)
            if r:  # round 0 compiles and warms up
                samples[name].append((time.perf_counter() - start) / steps)
            run[1:] = [params, state]
    ms = {name: statistics.median(v) * 1e3 for name, v in samples.items()}

    def ratios(name: str, base: str) -> tuple[float, float]:
        return round(ms[name] / ms[base], 3), round(min(samples[name]) / min(samples[base]), 3)

    ratio, fastest = ratios("wrapped", "inner")
    donated, donated_fastest = ratios("wrapped donated", "inner donated")
    flag, flag_fastest = ratios("wrapped donated, host flag", "inner donated")
    return {
        "model": f"MLP 784-1024-1024-10 (1.86M params), batch {batch}, adam, full jitted train step",
        "rounds": rounds,
        "inner_ms": round(ms["inner"], 3),
        "wrapped_ms": round(ms["wrapped"], 3),
        "ratio": ratio,
        "ratio_of_fastest_rounds": fastest,
        "ms": {name: round(v, 3) for name, v in ms.items()},
        "donated_ratio": donated,
        "donated_ratio_of_fastest_rounds": donated_fastest,
        "donated_host_flag_ratio": flag,
        "donated_host_flag_ratio_of_fastest_rounds": flag_fastest,
    }


def event_cost(n: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(2)
    params = {"kernel": jnp.asarray(rng.standard_normal((1000, n // 1000)), jnp.float32)}
    grads = {"kernel": jnp.asarray(rng.standard_normal((1000, n // 1000)), jnp.float32)}
    schedule = F.PolynomialSchedule(0.0, 0.9, begin_step=1, end_step=100, frequency=10)
    tx = fj.wrap(optax.sgd(0.01), F.FGGP(0.5), schedule)
    update = jax.jit(tx.update)
    state = tx.init(params)
    at_event, no_event = state._replace(count=jnp.int32(0)), state._replace(count=jnp.int32(1))

    def timed(s):
        jax.block_until_ready(update(grads, s, params))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(update(grads, s, params))
            best = min(best, time.perf_counter() - start)
        return best

    event, plain = timed(at_event), timed(no_event)
    host = {"kernel": np.asarray(params["kernel"])}
    start = time.perf_counter()
    F.select(F.FGGP(0.5), host, {"kernel": np.asarray(grads["kernel"])}, {"kernel": np.ones((1000, n // 1000), bool)},
             schedule.target_pruned(1, n))
    core = time.perf_counter() - start
    return {
        "n": n,
        "event_update_s": round(event, 4),
        "plain_update_s": round(plain, 4),
        "event_cost_s": round(event - plain, 4),
        "fggp_core_numpy_select_s": round(core, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 1e6 only")
    parser.add_argument("--batch", type=int, default=256, help="batch size of the step-time model")
    parser.add_argument("--step-only", action="store_true", help="step time only; writes no file")
    args = parser.parse_args()
    if args.step_only:
        print(json.dumps(step_times(rounds=30, steps=10, batch=args.batch)))
        return
    device = jax.devices()[0]
    result = {
        "device": f"{device.platform}: {device.device_kind}",
        "jax": jax.__version__,
        "step_time": step_times(rounds=3 if args.quick else 30, steps=20 if args.quick else 10, batch=args.batch),
        "event_cost": [event_cost(n, 2 if args.quick else 3) for n in ([10**6] if args.quick else [10**6, 10**7])],
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "jax.json"
    out.parent.mkdir(exist_ok=True)
    runs = json.loads(out.read_text()).get("runs", {}) if out.exists() else {}
    runs[result["device"]] = result  # one entry per device kind (CPU, GPU, ...)
    out.write_text(json.dumps({"benchmark": "benchmarks/bench_jax.py", "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
