"""BEFORE: magnitude pruning with tensorflow-model-optimization (tfmot) — Keras 2 only.

Needs TensorFlow with tf-keras (Keras 2) and tensorflow-model-optimization; it does not run on
Keras 3. The fggp version of the same script is after_fggp.py (runs on Keras 3, any backend).
See docs/migrating-from-tfmot.md.
"""

import numpy as np
import tensorflow_model_optimization as tfmot
from sklearn.datasets import load_digits
from tensorflow import keras  # Keras 2 (tf-keras)

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")

base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
schedule = tfmot.sparsity.keras.PolynomialDecay(
    initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=100, power=3, frequency=10
)
model = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(
    x, y, batch_size=64, epochs=5, verbose=0,
    callbacks=[
        tfmot.sparsity.keras.UpdatePruningStep(),
        tfmot.sparsity.keras.PruningSummaries(log_dir="logs"),
    ],
)
final = tfmot.sparsity.keras.strip_pruning(model)
for w in final.weights:
    if "kernel" in w.name:
        print(w.name, "sparsity", 1 - np.count_nonzero(w.numpy()) / w.numpy().size)
final.save("pruned.h5")
