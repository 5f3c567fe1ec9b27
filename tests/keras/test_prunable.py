"""Which variables are pruned (``prunable=``) and what the callback reports about them.

The surface is the one of fggp.torch and fggp.jax: None (the default set), a list of names
(``variable.path``), or a predicate ``(path, variable) -> bool``; the old one-argument
predicate ``variable -> bool`` still works with a DeprecationWarning.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fggp.keras
import fggp_core as F
from tests.keras import models

DEFAULT_LAYERS = ["conv1d", "conv1d_t", "conv2d", "conv2d_t", "conv3d", "conv3d_t", "dense", "einsum"]


def zoo() -> keras.Model:
    """Every default-prunable layer type, plus what must stay dense by default: an Embedding,
    a BatchNormalization, biases and a frozen Dense."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    tokens = keras.Input((6,), dtype="int32")
    h1 = L.Embedding(10, 4, name="embedding")(tokens)
    h1 = L.Conv1DTranspose(2, 2, name="conv1d_t")(L.Conv1D(3, 2, name="conv1d")(h1))
    image = keras.Input((5, 5, 1))
    h2 = L.Conv2DTranspose(2, 3, name="conv2d_t")(L.Conv2D(2, 3, name="conv2d")(image))
    h2 = L.BatchNormalization(name="norm")(h2)
    volume = keras.Input((4, 4, 4, 1))
    h3 = L.Conv3DTranspose(1, 2, name="conv3d_t")(L.Conv3D(2, 2, name="conv3d")(volume))
    h = L.Concatenate()([L.Flatten()(h1), L.Flatten()(h2), L.Flatten()(h3)])
    h = L.Dense(8, name="dense")(h)
    h = L.EinsumDense("ab,bc->ac", output_shape=4, bias_axes="c", name="einsum")(h)
    frozen = L.Dense(3, name="frozen")
    out = frozen(h)
    frozen.trainable = False
    return keras.Model([tokens, image, volume], out, name="zoo")


def kernel_paths(model: keras.Model, layers: list[str]) -> list[str]:
    """The kernels of the named layers, in model.weights order."""
    wanted = {model.get_layer(name).kernel.path for name in layers}
    return [v.path for v in model.weights if v.path in wanted]


def test_default_set_is_the_trainable_dense_einsum_and_conv_kernels():
    model = zoo()
    chosen = fggp.keras.prunable_variables(model)
    assert list(chosen) == kernel_paths(model, DEFAULT_LAYERS)
    assert not any("embedding" in p or "norm" in p or "frozen" in p or p.endswith("bias") for p in chosen)


def test_a_list_of_paths_selects_exactly_those_embedding_included():
    model = zoo()
    paths = [model.get_layer("embedding").embeddings.path, model.get_layer("dense").kernel.path]
    assert list(fggp.keras.prunable_variables(model, paths)) == paths  # model.weights order


def test_a_predicate_gets_the_path_and_the_variable():
    model = zoo()
    seen = []

    def conv_kernels(path: str, variable) -> bool:
        seen.append((path, variable.path))
        return "conv" in path and path.endswith("kernel")

    chosen = fggp.keras.prunable_variables(model, conv_kernels)
    assert list(chosen) == kernel_paths(model, [n for n in DEFAULT_LAYERS if n.startswith("conv")])
    assert seen and all(path == vpath for path, vpath in seen)


def test_a_one_argument_predicate_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"\(path, variable\) -> bool"):
        cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(), prunable=lambda v: "dense" in v.path)
    model = zoo()
    new = fggp.keras.prunable_variables(model, lambda path, v: "dense" in path)
    assert list(fggp.keras.prunable_variables(model, cb.prunable)) == list(new)


@pytest.mark.parametrize(
    "value", [3, "zoo/dense/kernel", [1, 2], keras.layers.Dense, lambda a, b, c: True], ids=repr
)
def test_other_values_are_config_errors_that_say_what_is_allowed(value):
    with pytest.raises(F.ConfigError, match="prunable.*predicate"):
        fggp.keras.PruningCallback(F.Magnitude(), models.schedule(), prunable=value)


def test_a_listed_frozen_variable_is_a_config_error_naming_it():
    model = zoo()
    path = model.get_layer("frozen").kernel.path
    with pytest.raises(F.ConfigError, match=path):
        fggp.keras.prunable_variables(model, [path])


def test_sparsity_and_layer_report_follow_the_masks():
    x, y = models.digits()
    model = models.compile(models.mlp())
    schedule = models.schedule(end=20, frequency=10)
    kernels = lambda path, v: path.endswith("kernel")  # noqa: E731
    cb = fggp.keras.PruningCallback(F.Magnitude(), schedule, scope="layerwise", prunable=kernels)
    assert cb.sparsity() == 0.0 and cb.layer_report() == {}  # nothing known before training
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[cb], verbose=0)
    report = cb.layer_report()
    assert list(report) == list(cb.masks)
    for path, mask in cb.masks.items():
        row = report[path]
        assert (row["size"], row["pruned"]) == (mask.size, mask.size - int(mask.sum()))
        assert isinstance(row["size"], int) and isinstance(row["pruned"], int)
        assert row["density"] == pytest.approx(1 - row["pruned"] / row["size"])
        assert row["pruned"] == models.target(schedule, mask.size)
    n = sum(r["size"] for r in report.values())
    assert cb.sparsity() == sum(r["pruned"] for r in report.values()) / n
    weights = models.weights_of(model)
    assert all(np.count_nonzero(weights[p][~m]) == 0 for p, m in cb.masks.items())
