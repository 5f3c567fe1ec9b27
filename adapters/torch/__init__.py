"""fggp.torch: prune PyTorch models during ordinary training, selecting on the tensors' device.

- ``attach(model, optimizer, method, schedule)``: hooks a ``TorchPruner`` onto the optimizer;
  the training loop stays unchanged. ``finalize(model)`` makes the result plain and permanent.
- ``select``: ``fggp_core.select`` on torch tensors (CPU or CUDA), identical masks.
- ``TorchExecutor``: the selection primitives with torch ops (what ``select`` runs on).
"""

from .executor import TORCH, TorchExecutor
from .params import PRUNABLE_LAYERS, prunable_parameters
from .pruner import TorchPruner, attach, finalize
from .selection import select

__all__ = [
    "PRUNABLE_LAYERS",
    "TORCH",
    "TorchExecutor",
    "TorchPruner",
    "attach",
    "finalize",
    "prunable_parameters",
    "select",
]
