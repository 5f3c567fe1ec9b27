"""fggp.jax: fggp for JAX and optax — on-device selection and an optax wrapper that prunes in jit.

- ``select(method, weights, grads, masks, k, *, scope, step)``: ``fggp_core.select`` with the
  JAX backend (``JAX``); ``select_jit``: the same as one compiled program.
- ``wrap(inner, method, schedule, ...)``: an ``optax.GradientTransformation`` whose state holds
  the masks; events (the core's event table, the core's selection) run inside ``jax.jit``.
- ``masks(opt_state)``, ``check(opt_state)``, ``apply_masks(params, opt_state)``,
  ``sparsity(opt_state)``, ``layer_report(opt_state)``.
- ``save_sparse(params, path)`` / ``load_sparse(path, like=params)``: the fggp sparse file
  (docs/sparse-format.md), named by leaf path; loading keeps ``like``'s structure, dtypes, shardings.
"""

from .backend import JAX, JaxBackend
from .report import apply_masks, check, layer_report, masks, skipped_events, sparsity
from .selection import run_traced, select, select_jit
from .sparse_file import load_sparse, save_sparse
from .transform import PruneState, is_event, leaf_names, migrate_state, wrap

__all__ = [
    "JAX",
    "JaxBackend",
    "PruneState",
    "apply_masks",
    "check",
    "is_event",
    "layer_report",
    "leaf_names",
    "load_sparse",
    "masks",
    "migrate_state",
    "run_traced",
    "save_sparse",
    "select",
    "select_jit",
    "skipped_events",
    "sparsity",
    "wrap",
]
