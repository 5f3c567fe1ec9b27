"""fggp.keras.flops: multiply-accumulates per sample of Dense and Conv kernels, pruned entries costing none."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import fggp.keras  # noqa: E402
from fggp_core import ConfigError  # noqa: E402


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)  # 64 positions, 108 weights
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)  # 16 positions, 36 weights
    x = keras.layers.SeparableConv2D(2, 1, name="sep")(x)  # 16 positions; 4 + 8 weights
    x = keras.layers.Conv2DTranspose(2, 2, strides=2, name="up")(x)  # 4x4 in: 16 positions, 16 weights
    x = keras.layers.Dense(5, name="rows")(x)  # per pixel: 64 rows, 10 weights
    outputs = keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(x))  # 1 row, 960 weights
    return keras.Model(inputs, outputs)


def test_counts_match_the_layer_arithmetic_and_zeros_cost_nothing():
    model = _model()
    report = fggp.keras.flops(model, (8, 8, 3))
    by_path = {path: (r.kind, r.positions, r.size) for path, r in report.layers.items()}
    assert by_path[model.get_layer("conv").kernel.path] == ("conv", 64, 108)
    assert by_path[model.get_layer("dw").kernel.path] == ("conv", 16, 36)
    assert by_path[model.get_layer("sep").depthwise_kernel.path] == ("conv", 16, 4)
    assert by_path[model.get_layer("sep").pointwise_kernel.path] == ("conv", 16, 8)
    assert by_path[model.get_layer("up").kernel.path] == ("conv_transpose", 16, 16)
    assert by_path[model.get_layer("rows").kernel.path] == ("linear", 64, 10)
    assert by_path[model.get_layer("fc").kernel.path] == ("linear", 1, 960)
    assert report.fraction == 1.0

    kernel = model.get_layer("fc").kernel
    kernel.assign(np.where(np.arange(960).reshape(320, 3) < 480, 0.0, kernel.numpy()))
    pruned = fggp.keras.flops(model, example=np.zeros((4, 8, 8, 3), "float32"))
    assert pruned.layers[kernel.path].kept == 480
    assert pruned.dense_macs - pruned.macs == 480
    assert pruned.layers[model.get_layer("conv").kernel.path].positions == 64  # divided by the batch of 4


def test_bad_input_shape_names_the_argument():
    with pytest.raises(ConfigError, match="input_shape"):
        fggp.keras.flops(_model(), (8, -1, 3))
