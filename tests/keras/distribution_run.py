"""Run by test_distribution.py in a fresh process with KERAS_BACKEND=jax and 8 simulated CPU
devices (XLA_FLAGS must be set before JAX starts): ``PruningCallback`` under
``keras.distribution`` gives the masks of the undistributed run. Prints one line per check."""

from __future__ import annotations

import keras
import numpy as np

import fggp.keras as fk
import fggp_core as F

assert keras.backend.backend() == "jax", keras.backend.backend()
DEVICES = keras.distribution.list_devices()
assert len(DEVICES) == 8, DEVICES


def fit(distribution) -> tuple[list[np.ndarray], keras.Model, float]:
    """Two epochs of a small MLP under ``distribution`` (None: one device); masks, model, sparsity."""
    keras.distribution.set_distribution(distribution)
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((16,)), keras.layers.Dense(64, activation="relu", name="d1"), keras.layers.Dense(8, name="d2"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((64, 16)).astype("float32"), rng.standard_normal((64, 8)).astype("float32")
        callback = fk.PruningCallback(F.Taylor(), F.PolynomialSchedule(0.0, 0.8, begin_step=1, end_step=6, frequency=2))
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[callback], verbose=0, shuffle=False)
        return list(callback.masks.values()), model, callback.sparsity()
    finally:
        keras.distribution.set_distribution(None)


def main() -> None:
    expected, _, sparsity = fit(None)
    mesh = keras.distribution.DeviceMesh((4, 2), ["batch", "model"], DEVICES)
    layouts = keras.distribution.LayoutMap(mesh)
    layouts[".*d1/kernel"] = ("model", None)  # rows over "model"
    layouts[".*d2/kernel"] = (None, "model")  # columns over "model": the global-view selection handles it too
    runs = {
        "DataParallel": keras.distribution.DataParallel(devices=DEVICES),
        "ModelParallel": keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch"),
    }
    for name, distribution in runs.items():
        masks, model, reached = fit(distribution)
        assert reached == sparsity, (reached, sparsity)
        for got, want in zip(masks, expected):
            assert np.array_equal(got, want), f"{name}: {np.count_nonzero(got != want)} entries differ"
        kernels = [v for v in model.weights if v.path.endswith("kernel")]
        for v, mask in zip(kernels, masks):
            assert np.all(np.asarray(v.value)[~mask] == 0.0), v.path
        if name == "ModelParallel":
            spec = kernels[0].value.sharding.spec
            assert tuple(spec)[:1] == ("model",), spec  # the variables stay sharded
        print(f"{name}: masks == one device, sparsity {reached:.4f}: ok")


if __name__ == "__main__":
    main()
