"""fit time with fggp.keras.PruningCallback between events, against plain fit (target <= 1.05x).

Runs on the process's Keras backend (``KERAS_BACKEND``; run once per backend, or give
``--backends`` to run each in a subprocess). Cases: an MLP 784-1024-1024-10 (1.86 M weights,
batch 256) and a small CNN (28x28x1, two 3x3 convolutions and two dense layers, batch 64), each
with SGD momentum 0.9 and with Adam; random data. The pruning schedule (global FGGP, 90 %) has all
its events in the first epoch, so epochs 2.. are "between events".

Measured robustly on a noisy machine (single epochs of an unchanged program jump to ~2x at
random): ``--pairs`` pairs of ``--epochs``-epoch ``fit`` calls, plain and pruned back to back (the
order alternates between pairs), each call reduced to its fastest epoch after the first
(compilation, events), each pair to the ratio pruned / plain. Reported per case: the median of
the pair ratios, their range, and the ratio of the fastest epochs over all pairs, in process
CPU time (checked against the target: on a shared machine, time other processes take from this
one's cores does not count) and in wall time.

    python benchmarks/bench_keras.py --backends tensorflow jax torch [--quick]
    KERAS_BACKEND=jax python benchmarks/bench_keras.py

Writes benchmarks/results/keras_<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CASES = {  # model: (samples, batch)
    "MLP 784-1024-1024-10": (4096, 256),
    "small CNN": (2048, 64),
}
OPTIMIZERS = ("SGD momentum", "Adam")


def build(model_name: str):
    import keras

    if model_name.startswith("MLP"):
        return keras.Sequential([
            keras.Input((784,)),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10),
        ])
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10),
    ])


def data(model_name: str) -> tuple[np.ndarray, np.ndarray]:
    samples, _ = CASES[model_name]
    rng = np.random.default_rng(0)
    shape = (samples, 784) if model_name.startswith("MLP") else (samples, 28, 28, 1)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, 10, samples).astype("int32")


def fastest_epoch(model_name: str, opt_name: str, pruned: bool, epochs: int) -> tuple[float, float]:
    """The fastest epoch after the first of one ``fit`` (a fresh model): process CPU time and wall time."""
    import keras

    import fggp
    import fggp.keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build(model_name)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9) if opt_name == "SGD momentum" else keras.optimizers.Adam(1e-3)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times: list[tuple[float, float]] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.process_time(), time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            times.append((time.process_time() - self.start[0], time.perf_counter() - self.start[1]))

    samples, batch = CASES[model_name]
    steps = samples // batch
    callbacks: list = [Timer()]
    if pruned:  # events at steps 0, steps/4, ..., steps: all in the first epoch
        schedule = fggp.PolynomialSchedule(0.0, 0.9, 0, steps, max(1, steps // 4))
        callbacks.insert(0, fggp.keras.PruningCallback(fggp.FGGP(0.5), schedule))
    x, y = data(model_name)
    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=callbacks, verbose=0)
    if pruned:
        assert abs(callbacks[0].sparsity() - 0.9) < 0.01
    return min(t[0] for t in times[1:]), min(t[1] for t in times[1:])


def measure(model_name: str, opt_name: str, pairs: int, epochs: int) -> dict:
    """Pair ratios of CPU time (the figure checked against the target: time other processes take from
    this one's cores does not count) and of wall time (what a user waits for, on a quiet machine)."""
    runs: dict[str, dict[bool, list[float]]] = {"cpu": {False: [], True: []}, "wall": {False: [], True: []}}
    for i in range(pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        for pruned in order:
            cpu, wall = fastest_epoch(model_name, opt_name, pruned, epochs)
            runs["cpu"][pruned].append(cpu)
            runs["wall"][pruned].append(wall)
    row = {"model": model_name, "optimizer": opt_name, "samples_batch": list(CASES[model_name]), "pairs": pairs,
           "epochs_per_fit": epochs, "target": 1.05}
    for clock, prefix in (("cpu", ""), ("wall", "wall_")):
        plain, pruned = runs[clock][False], runs[clock][True]
        ratios = [b / a for a, b in zip(plain, pruned)]
        row.update({
            f"{prefix}plain_epoch_s": round(min(plain), 4),
            f"{prefix}pruned_epoch_s": round(min(pruned), 4),
            f"{prefix}ratio_median": round(statistics.median(ratios), 4),
            f"{prefix}ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
            f"{prefix}ratio_of_fastest": round(min(pruned) / min(plain), 4),
        })
    return row


def run_here(args: argparse.Namespace) -> dict:
    import keras

    backend = keras.backend.backend()
    models = [m for m in CASES if not args.quick or m.startswith("MLP")]
    rows = [measure(m, o, args.pairs, args.epochs) for m in models for o in OPTIMIZERS]
    result = {"benchmark": "fggp.keras between events vs plain fit", "backend": backend,
              "keras": keras.__version__, "quick": args.quick, "rows": rows}
    for r in rows:
        print(f"{backend:>10} {r['model']}, {r['optimizer']}: CPU x{r['ratio_median']:.3f} "
              f"(pairs {r['ratio_range'][0]:.3f}-{r['ratio_range'][1]:.3f}, fastest x{r['ratio_of_fastest']:.3f}; "
              f"plain {r['plain_epoch_s']:.3f} s/epoch); wall x{r['wall_ratio_median']:.3f} "
              f"(pairs {r['wall_ratio_range'][0]:.3f}-{r['wall_ratio_range'][1]:.3f})", flush=True)
    out = RESULTS / f"keras_{backend}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MLP only, 2 pairs of 3-epoch fits")
    parser.add_argument("--pairs", type=int, default=None, help="default 6 (2 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument("--backends", nargs="+", default=None, help="run each Keras backend in a subprocess")
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (2 if args.quick else 6)
    args.epochs = args.epochs or (3 if args.quick else 5)
    if not args.backends:
        return run_here(args)
    results = {}
    for backend in args.backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        cmd = [sys.executable, __file__, "--pairs", str(args.pairs), "--epochs", str(args.epochs)]
        run = subprocess.run(cmd + (["--quick"] if args.quick else []), env=env, text=True, capture_output=True,
                             cwd=Path(__file__).resolve().parent.parent)
        sys.stdout.write(run.stdout)
        if run.returncode != 0:
            results[backend] = {"failed": (run.stderr.strip().splitlines() or ["failed"])[-1]}
            print(f"{backend}: failed: {results[backend]['failed']}")
        else:
            results[backend] = json.loads((RESULTS / f"keras_{backend}.json").read_text())
    return results


if __name__ == "__main__":
    main()
