"""``fggp.keras.flops``: dense and pruned multiply-accumulates of a model's Dense and Conv layers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from fggp_core.flops import FlopsReport, LayerFlops, check_input

__all__ = ["flops"]

L = keras.layers
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_COUNTED = (L.Dense, *_CONV, *_TRANSPOSED, *_DEPTHWISE, *_SEPARABLE)


def _kernels(layer: Any) -> list[Any]:
    if isinstance(layer, _SEPARABLE):
        return [layer.depthwise_kernel, layer.pointwise_kernel]
    return [layer.kernel]


def _channels(shape: Sequence[int], layer: Any) -> int:
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    return shape[1] if first else shape[-1]


def _positions(layer: Any, inputs: Any, outputs: Any) -> int:
    """Uses of each kernel entry for the batch (see fggp_core.flops)."""
    if isinstance(layer, _TRANSPOSED):
        shape = tuple(inputs.shape)
        return math.prod(shape) // _channels(shape, layer)  # once per input pixel
    shape = tuple(outputs.shape)
    return math.prod(shape) // (shape[-1] if isinstance(layer, L.Dense) else _channels(shape, layer))


def flops(model: keras.Model, input_shape: Sequence[int] | None = None, *, example: Any = None,
          pruner: Any = None) -> FlopsReport:  # fmt: skip
    """MACs per sample of every ``Dense``, ``Conv1D/2D/3D``, ``Conv*Transpose``, ``DepthwiseConv*``
    and ``SeparableConv*`` kernel (both kernels of a separable layer).

    Runs one sample through the model (``training=False``) to learn how often each kernel entry is
    used (see ``fggp_core.flops``). Pass ``input_shape``, one sample's shape without the batch
    dimension (a float32 zero input of batch 1), or ``example``, the model's input for a batch of
    any size (counts are divided by its batch size). Kept entries come from
    ``pruner.layer_report()`` when a ``PruningCallback`` is given, otherwise they are the kernel's
    non-zero entries. A layer called several times counts each call. Returns a ``FlopsReport``
    keyed by variable path.
    """
    if check_input(input_shape, example) is not None:
        example = np.zeros((1, *input_shape), dtype="float32")
    batch = int(np.shape(example)[0]) if np.ndim(example) else 1

    positions: dict[int, int] = {}
    layers = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, _COUNTED)]

    def recorder(layer: Any):
        call = layer.call

        def counting_call(inputs, *args, **kwargs):
            outputs = call(inputs, *args, **kwargs)
            positions[id(layer)] = positions.get(id(layer), 0) + _positions(layer, inputs, outputs)
            return outputs

        return counting_call

    try:
        for layer in layers:
            layer.call = recorder(layer)  # an instance attribute: shadows the class's call for this pass
        model(example, training=False)
    finally:
        for layer in layers:
            layer.__dict__.pop("call", None)

    report = pruner.layer_report() if pruner is not None else {}
    counted = {}
    for layer in layers:
        if id(layer) not in positions:
            continue
        kind = (
            "conv_transpose" if isinstance(layer, _TRANSPOSED)
            else "linear" if isinstance(layer, L.Dense) else "conv"
        )  # fmt: skip
        for kernel in _kernels(layer):
            size = math.prod(kernel.shape)
            if kernel.path in report:
                kept = size - int(report[kernel.path]["pruned"])
            else:
                kept = int(np.count_nonzero(keras.ops.convert_to_numpy(kernel.value)))
            counted[kernel.path] = LayerFlops(kind, positions[id(layer)] // batch, size, kept)
    return FlopsReport(counted)
