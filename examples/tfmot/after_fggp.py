"""AFTER: the same pruning as before_tfmot.py with fggp on Keras 3 (TensorFlow, JAX or torch backend).

    KERAS_BACKEND=jax python examples/tfmot/after_fggp.py

``TfmotPolynomialDecay`` fires at tfmot's steps and keeps tfmot's count per layer
(``max(1, round(float32(n) * (1 - s)))``), ``Magnitude()`` with ``scope="layerwise"`` is
``prune_low_magnitude``'s per-layer magnitude threshold. No wrapper layers, no
``UpdatePruningStep``, no ``strip_pruning``: the saved model is plain Keras. See
docs/migrating-from-tfmot.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_digits

import fggp
import fggp.keras


def main(log_dir: str) -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    schedule = fggp.TfmotPolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=100, power=3, frequency=10
    )
    pruning = fggp.keras.PruningCallback(fggp.Magnitude(), schedule, scope="layerwise")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(
        x, y, batch_size=64, epochs=5, verbose=0,
        # PruningSummaries: the callback adds `sparsity` to the epoch logs; every Keras logger records it
        # (keras.callbacks.TensorBoard(log_dir) too, when the tensorboard package is installed)
        callbacks=[pruning, keras.callbacks.CSVLogger(str(Path(log_dir) / "log.csv"))],
    )
    print((Path(log_dir) / "log.csv").read_text())
    for path, row in pruning.layer_report().items():
        kernel = {v.path: v for v in model.weights}[path]
        zeros = 1 - np.count_nonzero(keras.ops.convert_to_numpy(kernel)) / row["size"]
        print(f"{path}: sparsity {zeros:.4f} ({row['size'] - row['pruned']}/{row['size']} kept)")
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "pruned.keras")  # plain Keras: strip_pruning is not needed


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as logs:
        main(sys.argv[1] if len(sys.argv) > 1 else logs)
