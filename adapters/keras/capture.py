"""Inside the compiled train step: capture this step's gradients and keep pruned entries at zero.

A Keras callback runs on the host between train steps and never sees gradients. Every Keras 3
train step, on every backend, hands its gradients to the model's optimizer:

- tensorflow: ``optimizer.apply_gradients(zip(grads, vars))`` inside ``tf.function``
  (``jit_compile`` on or off), which calls ``optimizer.apply``;
- jax: ``optimizer.stateless_apply(optimizer_variables, grads, trainable_variables)`` inside
  ``jax.jit``, which runs ``optimizer.apply(grads)`` in a ``StatelessScope`` mapping every
  optimizer variable to its traced value and returns the updated values of all of them;
- torch: ``optimizer.apply(grads, vars)`` under ``torch.no_grad()``.

So the one place all three share is the optimizer instance's ``apply``. ``OptimizerHook``
replaces it on that instance only (the class and the user's model are untouched) with:

1. for each prunable variable, ``grad_slot.assign(g)`` (the unscaled gradient) when the method
   needs gradients and ``capture_now`` is set (event steps), and ``g = where(mask, g, 0)`` so
   pruned entries get no update;
2. the original ``apply``;
3. ``stamp.assign(iterations)`` (with the copy) to prove that gradients were captured at this
   step, and ``w.assign(where(mask, w, 0))`` for each prunable variable unless the optimizer is one of
   Keras's own whose update of an entry with zero gradient and zero state is exactly zero
   (SGD, Adam, AdamW, Nadam, Adamax, RMSprop, Adagrad, Adadelta, Lion, Lamb, Ftrl: momentum,
   moments and multiplicative weight decay all keep 0.0 at 0.0). Others (Muon orthogonalises
   the whole update; user optimizers) get the re-masking pass, one read and write per step.

The masks, gradient slots and the stamp are non-trainable Keras variables created with
``optimizer.add_variable``. Being optimizer variables is what makes this work under JAX: they
are part of the optimizer state that the jitted step takes and returns, so their updates leave
the stateless step and masks changed at an event enter the next one (a variable read from
outside the state would be baked into the trace as a constant). On tensorflow and torch they
are ordinary variables captured by the compiled function. There is no extra forward or
backward pass. Copying gradients is only needed at event steps, so the callback keeps two
compiled train steps, traced with ``capture_now`` True and False, and swaps
``model.train_function`` before each step (a Python attribute: no host work, no sync).

``uninstall`` restores the optimizer exactly (its own ``apply``, its own variable list), so a
model saved after ``fit`` holds no fggp state and loads in a process without fggp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["OptimizerHook", "hook_of", "keeps_zeros"]

_ATTRIBUTE = "_fggp_hook"
# Keras optimizers whose step leaves an entry at exactly 0.0 when its gradient and every slot
# of it are 0.0 (the hook masks gradients every step and slots at events).
_KEEP_ZEROS = (
    keras.optimizers.SGD,
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.Nadam,
    keras.optimizers.Adamax,
    keras.optimizers.RMSprop,
    keras.optimizers.Adagrad,
    keras.optimizers.Adadelta,
    keras.optimizers.Lion,
    keras.optimizers.Lamb,
    keras.optimizers.Ftrl,
)


def keeps_zeros(optimizer: Any) -> bool:
    """True for Keras's own optimizers above (backend variants included), not user subclasses."""
    return isinstance(optimizer, _KEEP_ZEROS) and type(optimizer).__module__.startswith("keras.")


def hook_of(optimizer: Any) -> OptimizerHook | None:
    """The hook installed on ``optimizer``, if any."""
    return optimizer.__dict__.get(_ATTRIBUTE)


class OptimizerHook:
    """Masks (and optionally gradient slots) for ``variables``, living in ``optimizer``'s state.

    ``variables``: the prunable model variables (canonical order). ``capture``: keep a copy of
    each one's gradient from the latest optimizer step in ``grads`` (same shape and dtype).
    """

    def __init__(self, optimizer: Any, variables: Sequence[Any], capture: bool) -> None:
        self.optimizer = optimizer
        self.variables = list(variables)
        self.capture = capture
        # Read when the step is traced (tensorflow, jax) or run (torch): the callback keeps one
        # compiled step that captures, used at event steps, and one that does not.
        self.capture_now = capture
        self.masks: list[Any] = []
        self.grads: list[Any] = []
        self.stamp: Any = None
        self._keys = {optimizer._var_key(v): i for i, v in enumerate(self.variables)}
        self.remask = not keeps_zeros(optimizer)
        self.in_place = keras.backend.backend() == "torch"
        self.state = [self._state_of(v) for v in self.variables]

    # -- lifecycle -----------------------------------------------------------------------
    def install(self) -> None:
        """Create the hook's optimizer variables and replace ``optimizer.apply``."""
        opt = self.optimizer
        if hook_of(opt) is not None:
            hook_of(opt).uninstall()
        locked = opt._tracker.locked
        opt._tracker.unlock()
        try:
            for i, v in enumerate(self.variables):
                self.masks.append(opt.add_variable(v.shape, initializer="ones", dtype="bool", name=f"fggp_mask_{i}"))
                if self.capture:
                    self.grads.append(opt.add_variable(v.shape, dtype=v.dtype, name=f"fggp_grad_{i}"))
            self.stamp = opt.add_variable((), dtype=opt._iterations.dtype, name="fggp_stamp")
        finally:
            if locked:
                opt._tracker.lock()
        object.__setattr__(opt, "apply", self._apply)
        object.__setattr__(opt, _ATTRIBUTE, self)

    def uninstall(self) -> None:
        """Give the optimizer back its own ``apply`` and variable list."""
        opt = self.optimizer
        opt.__dict__.pop("apply", None)
        opt.__dict__.pop(_ATTRIBUTE, None)
        for v in [*self.masks, *self.grads, self.stamp]:
            if v is not None:
                opt._untrack_variable(v)
        self.masks, self.grads, self.stamp = [], [], None

    @property
    def installed(self) -> bool:
        return hook_of(self.optimizer) is self

    # -- inside the train step -----------------------------------------------------------
    def _apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> Any:
        opt = self.optimizer
        variables = opt._trainable_variables if trainable_variables is None else list(trainable_variables)
        grads = list(grads)
        scale = opt.loss_scale_factor
        for j, v in enumerate(variables):
            i = self._keys.get(opt._var_key(v))
            if i is None or grads[j] is None:
                continue
            g = grads[j]
            if self.capture and self.capture_now:
                self.grads[i].assign(ops.cast(g if scale is None else g / scale, self.grads[i].dtype))
            if self.in_place:  # torch runs eagerly on the step's own .grad buffers: no new tensor
                g.mul_(self.masks[i].value)
            else:
                grads[j] = ops.where(self.masks[i].value, g, 0.0)  # a weak scalar: keeps g's dtype
        result = type(opt).apply(opt, grads, trainable_variables)
        if self.remask:
            for v, mask_variable in zip(self.variables, self.masks):
                v.assign(ops.where(mask_variable.value, v.value, 0.0))
        if self.capture and self.capture_now:
            self.stamp.assign(opt._iterations)
        return result

    # -- on the host, at events ------------------------------------------------------------
    def set_masks(self, masks: Sequence[Any]) -> None:
        """Store new masks and zero the pruned entries of weights and optimizer state."""
        for i, (v, mask) in enumerate(zip(self.variables, masks)):
            self.masks[i].assign(ops.copy(mask))  # a buffer of its own: JAX donates the step's state
            for target in (v, *self.state[i]):
                target.assign(ops.where(mask, target.value, 0.0))

    def captured_at(self) -> int:
        """The optimizer iteration whose gradients the slots hold (0: none captured yet)."""
        return int(ops.convert_to_numpy(self.stamp))

    def _state_of(self, variable: Any) -> list[Any]:
        """The optimizer variables built for ``variable`` (momentum, Adam moments, EMA, ...).

        Keras names them ``{variable.path with '/' -> '_'}_{slot}`` with the variable's shape
        (``add_variable_from_reference``); factored slots of another shape are left alone
        (weights are re-masked after every step anyway).
        """
        prefix = variable.path.replace("/", "_") + "_"
        return [
            s
            for s in self.optimizer.variables
            if s.name.startswith(prefix) and tuple(s.shape) == tuple(variable.shape) and s is not variable
        ]
