"""Prune a small Keras CNN on sklearn's digits to 90 % sparsity with FGGP, on any Keras backend.

    KERAS_BACKEND=jax python examples/keras_digits.py      # or tensorflow, torch

Trains 8 epochs (about 180 optimizer steps); pruning events every 15 steps from step 0 to
step 120 on the cubic schedule; then saves the pruned model and reloads it with plain Keras.
Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fggp
import fggp.keras


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    schedule = fggp.PolynomialSchedule(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=120,
                                       frequency=15)
    pruning = fggp.keras.PruningCallback(fggp.FGGP(rate=0.5), schedule)  # default: Dense and Conv kernels
    model.fit(x_train, y_train, batch_size=64, epochs=8, callbacks=[pruning], verbose=0)

    for event in pruning.events:
        print(f"step {event.step:4d}: target sparsity {event.target_sparsity:.3f}, pruned {event.pruned}/{event.total}")
    for path, row in pruning.layer_report().items():
        print(f"{path:28s} density {row['density']:.3f} ({row['size'] - row['pruned']}/{row['size']} kept)")
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"backend {keras.backend.backend()}: sparsity {pruning.sparsity():.4f}, test accuracy {accuracy:.3f}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pruned.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path)  # plain Keras: fggp is not needed to load it
        same = np.array_equal(reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0))
        zeros = {n: r["zeros"] for n, r in fggp.keras.sparsity_report(reloaded).items()}
        print(f"reloaded: identical predictions {same}, zeros per kernel {zeros}")


if __name__ == "__main__":
    main()
