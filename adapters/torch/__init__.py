"""fggp.torch: prune PyTorch models during ordinary training, selecting on the tensors' device.

- ``select``: ``fggp_core.select`` on torch tensors (CPU or CUDA), identical masks.
- ``attach``: hooks a pruner onto an optimizer; the training loop stays unchanged.
"""

from .executor import TORCH, TorchExecutor
from .selection import select

__all__ = ["TORCH", "TorchExecutor", "select"]
