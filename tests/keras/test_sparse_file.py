"""fggp.keras.save_sparse / load_sparse on the process's Keras backend: exact round trips into a freshly built
model, in every float dtype; a refused file changes nothing; the file loads in NumPy by variable path."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fggp
import fggp_core as F
from fggp.keras import load_sparse, save_sparse
from fggp_core.errors import InputMismatchError
from tests.keras import models
from tests.keras.models import mlp


def _pruned(dtype: str, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(16, dtype=dtype), keras.layers.BatchNormalization(dtype=dtype)]
    )
    kernel = model.layers[0].kernel
    value = keras.ops.convert_to_numpy(kernel.value).astype("float32")
    value[np.random.default_rng(seed).random(value.shape) < 0.9] = 0.0
    value[0, :2] = [-0.0, np.inf]
    kernel.assign(keras.ops.convert_to_tensor(value, dtype=dtype))
    return model


def _host(model: keras.Model) -> list[bytes]:
    """The bytes of every weight, in ``model.weights`` order."""
    return [np.asarray(keras.ops.convert_to_numpy(v.value)).tobytes() for v in model.weights]


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64:UserWarning")  # JAX without x64
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_weights_round_trip_bit_exact_into_a_fresh_model(tmp_path, dtype):
    model = _pruned(dtype)
    path = tmp_path / "m.safetensors"
    records = save_sparse(model, path)
    kernel = model.layers[0].kernel.path
    assert {r.name: (r.kind, r.dtype) for r in records}[kernel] == ("sparse", dtype)
    fresh = _pruned(dtype, seed=1)
    assert _host(fresh) != _host(model)
    load_sparse(fresh, path)
    assert _host(fresh) == _host(model)
    assert np.asarray(fggp.load_sparse(path)[kernel]).dtype.name == dtype  # the same file in NumPy


def test_named_layers_load_by_path(tmp_path):
    def named(seed: int) -> keras.Model:
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8,))
        return keras.Model(inputs, keras.layers.Dense(4, name="b")(keras.layers.Dense(4, name="a")(inputs)), name="n")

    saved, fresh = named(0), named(1)
    save_sparse(saved, tmp_path / "net.safetensors")
    load_sparse(fresh, tmp_path / "net.safetensors")
    by_path = {v.path: bytes(b) for v, b in zip(fresh.weights, _host(fresh))}
    assert by_path == {v.path: bytes(b) for v, b in zip(saved.weights, _host(saved))}
    assert list(fggp.load_sparse(tmp_path / "net.safetensors")) == ["a/kernel", "a/bias", "b/kernel", "b/bias"]


def test_a_model_pruned_by_the_callback_round_trips_with_its_masks(tmp_path):
    x, y = models.digits()
    model = models.compile(mlp(0), optimizer="sgd")
    cb = fggp.keras.PruningCallback(F.Magnitude(), F.OneShotSchedule(0.9, step=2))
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, callbacks=[cb], verbose=0)
    records = save_sparse(model, tmp_path / "mlp.safetensors", sparse=cb)
    assert {r.name for r in records if r.kind == "sparse"} == set(cb.masks)
    fresh = mlp(1)
    load_sparse(fresh, tmp_path / "mlp.safetensors")
    assert _host(fresh) == _host(model)
    _, masks = fggp.load_sparse(tmp_path / "mlp.safetensors", with_masks=True)
    assert all(np.array_equal(masks[name], mask) for name, mask in cb.masks.items())


def test_a_refused_file_changes_nothing_and_names_the_mismatch(tmp_path):
    save_sparse(mlp(0), tmp_path / "mlp.safetensors")
    other = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48), keras.layers.Dense(11)], name="mlp")
    before = _host(other)
    with pytest.raises(InputMismatchError, match="kernel"):
        load_sparse(other, tmp_path / "mlp.safetensors")
    assert _host(other) == before
    with pytest.raises(fggp.SparseFileError, match="cannot be read"):
        load_sparse(other, tmp_path / "absent.safetensors")
