"""fggp.torch: prune PyTorch models during ordinary training, selecting on the tensors' device.

- ``attach(model, optimizer, method, schedule, *, prunable=...)``: hooks a ``TorchPruner`` onto
  the optimizer; the training loop stays unchanged. ``finalize(model)`` makes the result plain.
- ``select``: ``fggp_core.select`` on torch tensors (CPU or CUDA), identical masks.
- ``TorchBackend`` / ``TORCH``: the core's selection primitives with torch ops (what ``select``
  and the pruner run on).
- ``save_sparse`` / ``load_sparse`` / ``read_sparse``: the fggp sparse file (docs/sparse-format.md);
  ``to_sparse_linear``: pruned ``Linear`` layers as sparse CSR, only where measured faster.
- ``flops(model, input_shape)``: dense and pruned multiply-accumulates per sample (``FlopsReport``).
- ``TensorBoard(writer)``: an ``on_event`` hook writing each event's report as scalars.
"""

from .backend import TORCH, TorchBackend
from .events import TensorBoard
from .flops import flops
from .params import PRUNABLE_LAYERS, prunable_parameters
from .pruner import TorchPruner, attach, finalize
from .selection import select
from .sparse_file import load_sparse, read_sparse, save_sparse
from .sparse_linear import SparseLinear, to_sparse_linear

__all__ = [
    "PRUNABLE_LAYERS",
    "SparseLinear",
    "TORCH",
    "TensorBoard",
    "TorchBackend",
    "TorchPruner",
    "attach",
    "finalize",
    "flops",
    "prunable_parameters",
    "load_sparse",
    "read_sparse",
    "save_sparse",
    "select",
    "to_sparse_linear",
]
