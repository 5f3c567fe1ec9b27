"""fit time per epoch with fggp.keras.PruningCallback between events, against plain fit.

Runs on the process's Keras backend (run once per KERAS_BACKEND). The model is an MLP
784-512-512-10 on random data (8192 samples, batch 128: 64 steps per epoch). The pruning
schedule has all its events in epoch 1; epochs 2.. are "between events": the optimizer hook
masks gradients at every step (and weights too, for optimizers that could move pruned
entries; not Adam). Plain and pruned runs alternate in a rotating order, and the median epoch
time of each is compared (target <= 1.05x).

With ``--tfmot`` (default on the tensorflow backend), the same measurement is made in a
subprocess for tensorflow-model-optimization's ``prune_low_magnitude`` on the equivalent
tf-keras model against plain tf-keras fit. tfmot needs tf-keras, which pip would install
together with a second TensorFlow distribution over tensorflow-cpu; install it aside:
``pip install --no-deps --target /tmp/tfmot_site tensorflow-model-optimization==0.8.1
tf-keras==2.21.0 dm-tree==0.1.10`` and point ``--tfmot-path`` at it.

    KERAS_BACKEND=jax python benchmarks/bench_keras.py [--epochs 6] [--repeat 3]

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

SAMPLES, BATCH, WIDTH = 8192, 128, 512
STEPS = SAMPLES // BATCH

TFMOT_SCRIPT = r"""
import json, statistics, sys, time
import numpy as np
import tf_keras as K
import tensorflow_model_optimization as tfmot
samples, batch, width, epochs, repeat, steps = map(int, sys.argv[1:7])
rng = np.random.default_rng(0)
x = rng.standard_normal((samples, 784), dtype=np.float32); y = rng.integers(0, 10, samples)

class Timer(K.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): self.times.append(time.perf_counter() - self.t)

def run(prune):
    K.utils.set_random_seed(0)
    model = K.Sequential([K.Input((784,)), K.layers.Dense(width, activation="relu"),
                          K.layers.Dense(width, activation="relu"), K.layers.Dense(10)])
    callbacks = []
    if prune:
        schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, 0, steps, frequency=steps // 4)
        model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    model.compile(K.optimizers.Adam(1e-3), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = Timer(); timer.times = []
    model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=callbacks + [timer], verbose=0)
    return timer.times[1:]

plain, pruned = [], []
for _ in range(repeat):
    plain += run(False); pruned += run(True)
print(json.dumps({"plain_s": statistics.median(plain), "pruned_s": statistics.median(pruned)}))
"""


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((SAMPLES, 784), dtype=np.float32), rng.integers(0, 10, SAMPLES).astype("int32")


def epoch_times(method: object | None, epochs: int) -> list[float]:
    """Epoch wall times of one fit, the first (compilation, events) dropped."""
    import keras

    import fggp
    import fggp.keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(WIDTH, activation="relu"),
            keras.layers.Dense(WIDTH, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    callbacks: list = [Timer()]
    if method is not None:
        schedule = fggp.PolynomialSchedule(0.0, 0.9, 0, STEPS, STEPS // 4)  # events in epoch 1 only
        callbacks.insert(0, fggp.keras.PruningCallback(method, schedule))
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=callbacks, verbose=0)
    return times[1:]


def tfmot(path: str, epochs: int, repeat: int) -> dict:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")
    args = [str(a) for a in (SAMPLES, BATCH, WIDTH, epochs, repeat, STEPS)]
    run = subprocess.run([sys.executable, "-c", TFMOT_SCRIPT, *args], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        return {"available": False, "reason": run.stderr.strip().splitlines()[-1] if run.stderr else "failed"}
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update(available=True, ratio=result["pruned_s"] / result["plain_s"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tfmot", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--tfmot-path", default="/tmp/tfmot_site")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import keras

    import fggp

    backend = keras.backend.backend()
    runs: dict[str, list[float]] = {"plain": [], "magnitude": [], "fggp": []}
    paired: dict[str, list[float]] = {"magnitude": [], "fggp": []}
    methods = {"plain": None, "magnitude": fggp.Magnitude(), "fggp": fggp.FGGP(0.5)}
    names = list(methods)
    for r in range(args.repeat):
        # Alternate, and rotate the order, so load from other users and a process that slows
        # as it builds models hit every variant alike.
        this = {}
        for name in names[r % 3 :] + names[: r % 3]:
            keras.backend.clear_session()
            this[name] = epoch_times(methods[name], args.epochs)
            runs[name] += this[name]
        for name in paired:  # within one repeat the variants ran back to back: a paired ratio
            paired[name].append(statistics.median(this[name]) / statistics.median(this["plain"]))
    median = {name: statistics.median(t) for name, t in runs.items()}
    result = {
        "backend": backend,
        "device": "cpu",
        "model": f"MLP 784-{WIDTH}-{WIDTH}-10, {SAMPLES} samples, batch {BATCH}, Adam",
        "epochs_timed_per_run": args.epochs - 1,
        "repeat": args.repeat,
        "epoch_s_median": median,
        "ratio_vs_plain": {n: median[n] / median["plain"] for n in ("magnitude", "fggp")},
        "paired_ratio_median": {n: statistics.median(r) for n, r in paired.items()},
        "paired_ratio_range": {n: [min(r), max(r)] for n, r in paired.items()},
        "target_ratio": 1.05,
    }
    if args.tfmot == "on" or (args.tfmot == "auto" and backend == "tensorflow"):
        result["tfmot"] = tfmot(args.tfmot_path, args.epochs, args.repeat)
        if result["tfmot"].get("available"):
            result["fggp_vs_tfmot_epoch"] = median["fggp"] / result["tfmot"]["pruned_s"]
    print(json.dumps(result, indent=2))
    out = Path(args.out or Path(__file__).parent / "results" / f"keras_{backend}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
