"""Small digits models and data for the Keras end-to-end tests (sklearn's 8x8 digits)."""

from __future__ import annotations

import functools

import keras
import numpy as np

import fggp_core as F


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """1797 images as float32 (1797, 64) in [0, 1] and int labels."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32"), y.astype("int32")


def mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(48, activation="relu"), keras.layers.Dense(10)], name="mlp"
    )


def functional_cnn(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    h = keras.layers.Reshape((8, 8, 1))(inputs)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.EinsumDense("ab,bc->ac", output_shape=24, bias_axes="c", activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h), name="cnn")


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(32, activation="relu")
        self.head = keras.layers.Dense(10)

    def call(self, x):
        return self.head(self.hidden(x))


def subclassed(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = Subclassed(name="sub")
    model(np.zeros((1, 64), "float32"))
    return model


def compile(model: keras.Model, optimizer: str = "adam", **kwargs) -> keras.Model:
    opt = keras.optimizers.Adam(1e-2) if optimizer == "adam" else keras.optimizers.SGD(0.05, momentum=0.9)
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs)
    return model


def schedule(end: int = 60, frequency: int = 10, final: float = 0.8) -> F.PolynomialSchedule:
    return F.PolynomialSchedule(0.0, final, 0, end, frequency)


def weights_of(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights}


def target(schedule: F.Schedule, n: int) -> int:
    return round(n * schedule.sparsity(schedule.end_step))
