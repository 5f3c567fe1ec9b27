"""Multiply-accumulate counts of dense and pruned layers (the Global MP paper's FLOPs axis).

A weight entry of a Linear/Dense or convolution layer takes part in one multiply-accumulate
(MAC) per *position* of one sample: per output row of a Linear layer (1, or the sequence
length for a ``(T, in)`` input), per output pixel of a convolution (whatever its groups,
depthwise included), per *input* pixel of a transposed convolution. A pruned entry takes
part in none, so a layer costs ``positions * kept`` MACs where the dense layer costs
``positions * size``. Biases, normalisation, activations and pooling are not counted: they
do not change with pruning and are small next to the weights' MACs. FLOPs are commonly
quoted as 2 × MACs.

The adapters find each layer's positions by running one sample through the model
(``fggp.torch.flops``, ``fggp.keras.flops``); this module holds the arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["LayerFlops", "FlopsReport", "check_input"]


def check_input(input_shape: Any, example: Any) -> tuple[int, ...] | None:
    """Exactly one of ``input_shape`` (one sample's shape, positive ints, no batch) and ``example``;
    return the shape as a tuple (None when ``example`` is given)."""
    if (input_shape is None) == (example is None):
        raise ConfigError("input_shape", input_shape, "pass exactly one of input_shape= and example=")
    if example is not None:
        return None
    if (
        isinstance(input_shape, (str, bytes))
        or not isinstance(input_shape, Sequence)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ConfigError("input_shape", input_shape, "one sample's shape: a sequence of positive ints, no batch")
    return tuple(input_shape)


@dataclass(frozen=True)
class LayerFlops:
    """One weight tensor: ``positions`` uses of each entry per sample, ``size`` entries, ``kept`` of them not pruned."""

    kind: str
    positions: int
    size: int
    kept: int

    @property
    def dense_macs(self) -> int:
        """MACs per sample with every entry kept."""
        return self.positions * self.size

    @property
    def macs(self) -> int:
        """MACs per sample with the pruned entries skipped."""
        return self.positions * self.kept


@dataclass(frozen=True)
class FlopsReport:
    """Per weight tensor (by the framework's parameter name) and in total, per sample."""

    layers: Mapping[str, LayerFlops]

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers.values())

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers.values())

    @property
    def fraction(self) -> float:
        """Remaining MACs as a fraction of the dense model's (1.0 for a model without counted layers)."""
        return self.macs / self.dense_macs if self.dense_macs else 1.0

    def as_dict(self) -> dict:
        """Plain JSON-ready data: totals and per layer ``kind``, ``positions``, ``size``, ``kept``, MACs."""
        return {
            "dense_macs": self.dense_macs,
            "macs": self.macs,
            "fraction": self.fraction,
            "layers": {
                name: {**vars(layer), "dense_macs": layer.dense_macs, "macs": layer.macs}
                for name, layer in self.layers.items()
            },
        }
