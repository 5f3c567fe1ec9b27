"""fggp.torch: prune PyTorch models during ordinary training, selecting on the tensors' device.

- ``attach(model, optimizer, method, schedule, *, prunable=...)``: hooks a ``TorchPruner`` onto
  the optimizer; the training loop stays unchanged. ``finalize(model)`` makes the result plain.
- ``select``: ``fggp_core.select`` on torch tensors (CPU or CUDA), identical masks.
- ``TorchBackend`` / ``TORCH``: the core's selection primitives with torch ops (what ``select``
  and the pruner run on).
"""

from .backend import TORCH, TorchBackend
from .params import PRUNABLE_LAYERS, prunable_parameters
from .pruner import TorchPruner, attach, finalize
from .selection import select

__all__ = [
    "PRUNABLE_LAYERS",
    "TORCH",
    "TorchBackend",
    "TorchPruner",
    "attach",
    "finalize",
    "prunable_parameters",
    "select",
]
