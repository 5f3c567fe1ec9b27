"""fggp.jax: fggp for JAX and optax — on-device selection and an optax wrapper that prunes in jit.

- ``select(method, weights, grads, masks, k, *, scope, step)``: ``fggp_core.select`` run with
  jnp ops (``JaxExecutor``); ``select_jit``: the same as one compiled program.
- ``wrap(inner, method, schedule, ...)``: an ``optax.GradientTransformation`` whose state holds
  the masks; events (counts from the host schedule) run inside ``jax.jit``.
- ``masks(opt_state)``, ``check(opt_state)``, ``apply_masks(params, opt_state)``.
"""

from .executor import JAX, JaxExecutor
from .selection import select, select_jit, select_traced
from .transform import PruneState, apply_masks, check, leaf_names, masks, skipped_events, wrap

__all__ = [
    "JAX",
    "JaxExecutor",
    "PruneState",
    "apply_masks",
    "check",
    "leaf_names",
    "masks",
    "select",
    "select_jit",
    "select_traced",
    "skipped_events",
    "wrap",
]
