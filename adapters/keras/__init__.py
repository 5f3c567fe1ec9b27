"""fggp.keras: gradual pruning for Keras 3 models, on the tensorflow, jax and torch backends.

    import fggp, fggp.keras
    cb = fggp.keras.PruningCallback(fggp.FGGP(0.5), fggp.PolynomialSchedule(0.0, 0.9, 0, 1000, 100))
    model.fit(x, y, epochs=10, callbacks=[cb])

The path of the data: ``PruningCallback`` (callback.py) finds the prunable variables and drives
``fggp_core.Pruner`` through its lifecycle methods; selection runs on the tensors' device through
``KerasBackend`` (backend.py), the core's one algorithm over ``keras.ops``; the masks go back into
the model.

How gradients reach a callback (capture.py). A callback never sees gradients, and gradient
methods (FGGP, Gradient, Taylor) need this step's. Every Keras 3 train step hands them to the
optimizer (``apply_gradients``/``apply`` on tensorflow and torch, ``stateless_apply`` -> ``apply``
on JAX), so ``OptimizerHook`` replaces ``apply`` on the model's optimizer instance for the
duration of ``fit``: it copies each prunable variable's gradient into a non-trainable slot and
stamps the iteration (event steps only), zeroes the gradients of pruned entries, runs the
original ``apply``, and re-zeroes pruned weights for optimizers that could move them. Slots,
masks and stamp are optimizer variables, so the JAX stateless step carries them in and out of
``jax.jit`` with the rest of the optimizer state; on tensorflow (``jit_compile`` on or off)
and torch they are variables the compiled step captures. Two compiled steps are kept, one
tracing the copy and one not; the callback points ``model.train_function`` at the copying one
only before event steps. No extra forward or backward pass, no model subclass, no host work
between events. At an event the callback syncs the JAX state, reads weights and slots,
selects, and assigns masked weights, masks and masked optimizer slots (momentum, Adam moments,
EMA). ``on_train_end`` restores the optimizer, so a saved ``.keras`` file is plain Keras.
"""

from .backend import KERAS, KerasBackend
from .callback import (
    PruningCallback,
    check_prunable,
    default_prunable,
    prunable_variables,
    sparsity_report,
    strip_pruning,
)
from .capture import OptimizerHook
from .flops import flops
from .selection import select
from .sparse_file import load_sparse, save_sparse

__all__ = [
    "KERAS",
    "KerasBackend",
    "OptimizerHook",
    "flops",
    "PruningCallback",
    "check_prunable",
    "default_prunable",
    "load_sparse",
    "prunable_variables",
    "save_sparse",
    "select",
    "sparsity_report",
    "strip_pruning",
]
