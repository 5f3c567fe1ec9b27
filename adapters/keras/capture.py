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
   the whole update; user optimizers) get the re-masking pass, one read and write per step, and
   so does every variable with a ``constraint`` (Keras applies it inside ``apply``, after the
   update, and ``w - mean(w)`` moves zeros).

On tensorflow without XLA (Keras's default on CPU), steps 1-3 run as one ``jit_compile=True``
function, so the ``where`` fuses into the optimizer's update instead of being a pass of its own
(``OptimizerHook._in_xla``). On jax they are part of the jitted step already; on torch, which
runs eagerly, the gradient is masked in place.

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
model saved after ``fit`` holds no fggp state and loads in a process without fggp. While
installed, the hook also replaces ``save_own_variables``/``load_own_variables`` of the optimizer
(and of a ``LossScaleOptimizer`` around it) with versions that skip its variables: a checkpoint
taken during ``fit`` (``ModelCheckpoint``, ``BackupAndRestore``) is plain Keras too, and
``load_model`` restores its optimizer state (``iterations``, moments) without a warning.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["OptimizerHook", "hook_of", "keeps_zeros"]

_ATTRIBUTE = "_fggp_hook"
TF_XLA_APPLY = True
"""tensorflow backend: compile the masked optimizer update with XLA where Keras does not (see
``OptimizerHook._in_xla``). Set ``fggp.keras.capture.TF_XLA_APPLY = False`` before ``fit`` to run
it op by op, as plain Keras does on CPU."""
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


def _tf() -> Any:
    import tensorflow as tf  # the tensorflow backend only

    return tf


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
    ``outer``: optimizers wrapping ``optimizer`` (``model.optimizer`` under mixed precision), whose
    saved state must not include the hook's variables either.
    """

    def __init__(
        self, optimizer: Any, variables: Sequence[Any], capture: bool, outer: Sequence[Any] | None = None
    ) -> None:
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
        # Re-zero after the update: every variable for optimizers that may move zeros, else only those with a
        # constraint (Keras applies it inside ``apply``, after the update; ``w - mean(w)`` moves zeros).
        self.remask = [
            i for i, v in enumerate(self.variables) if not keeps_zeros(optimizer) or v.constraint is not None
        ]
        # The optimizers whose saved variables must not include the hook's (model.optimizer wraps ``optimizer``
        # under mixed precision; a LossScaleOptimizer saves its inner optimizer's variables as its own).
        self.saved = list({id(o): o for o in (optimizer, *(outer or ()))}.values())
        self.in_place = keras.backend.backend() == "torch"
        self._and: dict[tuple[int, int], tuple[Any, int, Any, float]] = {}  # torch: AND masks (``_bits``)
        # torch: Keras's Adam/AdamW, whose CPU sqrt is slow on the zeros of pruned second moments (``_lift``)
        self.lifts = self.in_place and isinstance(optimizer, keras.optimizers.Adam) and keeps_zeros(optimizer)
        self.state = [self._state_of(v) for v in self.variables]
        self.tf_xla = keras.backend.backend() == "tensorflow" and keeps_zeros(optimizer)
        self._xla: Any = None  # tensorflow: the latest XLA-compiled masked update (``_in_xla``)

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
        for o in self.saved:  # a checkpoint taken during fit saves and loads as plain Keras
            object.__setattr__(o, "save_own_variables", functools.partial(self._save_plain, o))
            object.__setattr__(o, "load_own_variables", functools.partial(self._load_plain, o))

    def uninstall(self) -> None:
        """Give the optimizer back its own ``apply`` and variable list."""
        opt = self.optimizer
        opt.__dict__.pop("apply", None)
        opt.__dict__.pop(_ATTRIBUTE, None)
        for o in self.saved:
            o.__dict__.pop("save_own_variables", None)
            o.__dict__.pop("load_own_variables", None)
        for v in [*self.masks, *self.grads, self.stamp]:
            if v is not None:
                opt._untrack_variable(v)
        self.masks, self.grads, self.stamp = [], [], None

    @property
    def installed(self) -> bool:
        return hook_of(self.optimizer) is self

    # -- inside the train step -----------------------------------------------------------
    def _apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> Any:
        capture = bool(self.capture and self.capture_now)
        if self._in_xla(trainable_variables):
            # Only ever reached while Keras traces its train step (once per compiled step), so the
            # function is built per trace, closing over that step's variables and ``capture``.
            self._xla = _tf().function(
                lambda g: self._masked_apply(g, trainable_variables, capture), jit_compile=True, autograph=False
            )
            return self._xla(list(grads))
        return self._masked_apply(grads, trainable_variables, capture)

    def _in_xla(self, trainable_variables: Sequence[Any] | None) -> bool:
        """tensorflow: run the masking and the optimizer's update as one XLA function.

        Keras compiles the train step with XLA only where a GPU is present (``jit_compile="auto"``);
        on CPU each op is its own kernel, and the gradient ``where`` was one more pass over every
        prunable weight (an MLP step with SGD momentum 1.07x plain fit). Under XLA it fuses into
        the update, and the update's own ops fuse with each other (measured 1.00x). Only for
        Keras's own optimizers (their updates compile under XLA, as Keras's ``jit_compile=True``
        does), in a traced step (not ``run_eagerly``), without a ``tf.distribute`` strategy (its
        cross-replica merge) and without variable constraints (user code). ``TF_XLA_APPLY = False``
        turns it off.
        """
        if not (self.tf_xla and TF_XLA_APPLY):
            return False
        tf = _tf()
        if tf.executing_eagerly() or tf.distribute.has_strategy():
            return False
        opt = self.optimizer
        variables = opt._trainable_variables if trainable_variables is None else trainable_variables
        return all(getattr(v, "constraint", None) is None for v in variables)

    def _masked_apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None, capture: bool) -> Any:
        opt = self.optimizer
        variables = opt._trainable_variables if trainable_variables is None else list(trainable_variables)
        grads = list(grads)
        scale = opt.loss_scale_factor
        for j, v in enumerate(variables):
            i = self._keys.get(opt._var_key(v))
            if i is None or grads[j] is None:
                continue
            g = grads[j]
            if capture:
                self.grads[i].assign(ops.cast(g if scale is None else g / scale, self.grads[i].dtype))
            if self.in_place:  # torch runs eagerly on the step's own .grad buffers: no new tensor
                self._zero_pruned(i, g)
            else:
                grads[j] = ops.where(self.masks[i].value, g, 0.0)  # a weak scalar: keeps g's dtype
        lifted = self._lift() if self.lifts else []
        result = type(opt).apply(opt, grads, trainable_variables)
        self._unlift(lifted)
        for i in self.remask:
            self.variables[i].assign(ops.where(self.masks[i].value, self.variables[i].value, 0.0))
        if capture:
            self.stamp.assign(opt._iterations)
        return result

    def _zero_pruned(self, i: int, g: Any) -> None:
        """torch: the pruned entries of ``g`` set to +0.0 in place by a bitwise AND of its bits with
        an integer mask (-1 kept, 0 pruned). Exact where multiplying by the mask is not (NaN * 0 is
        NaN, -x * 0 is -0.0), and ~4x faster on CPU than a multiply by a bool tensor, a casting loop
        (the mask: ``_bits``)."""
        bits, _ = self._bits(i, g.element_size())
        if g.is_floating_point() and bits is not None:
            g.view(bits.dtype).bitwise_and_(bits)
        else:
            g.masked_fill_(~self.masks[i].value, 0)

    def _bits(self, i: int, itemsize: int) -> tuple[Any, float]:
        """torch: variable ``i``'s integer AND mask for ``itemsize``-byte elements (None if no integer type has
        that size) and its pruned share, rebuilt when the mask variable's tensor changes (events, restores)."""
        mask = self.masks[i].value
        key = (i, itemsize)
        cached = self._and.get(key)  # (the mask tensor, held so its id is not reused; its version; AND mask; share)
        if cached is None or cached[0] is not mask or cached[1] != mask._version:
            import torch

            from fggp.torch.masking import and_mask  # the torch adapter's own (the torch backend only)

            pruned = 1.0 - int(torch.count_nonzero(mask)) / max(1, mask.numel())
            cached = self._and[key] = (mask, mask._version, and_mask(~mask, itemsize), pruned)
        return cached[2], cached[3]

    def _moments(self, i: int) -> list[Any]:
        """torch, Adam/AdamW: variable ``i``'s second moment (and amsgrad's running maximum), as tensors."""
        opt = self.optimizer
        index = opt._get_variable_index(self.variables[i])
        slots = [opt._velocities] + ([opt._velocity_hats] if opt.amsgrad else [])
        return [slot[index].value for slot in slots]

    def _lift(self) -> list[int]:
        """torch, on CPU: the pruned second moments of heavily pruned variables set to 1.0 for this update
        (``fggp.torch.masking.lift``: torch's sqrt of an exact zero is ~6x slower; with zero gradient and first
        moment the update is +0 for any positive second moment), back to +0.0 by ``_unlift`` right after."""
        import torch

        from fggp.torch.masking import LIFT_MIN_PRUNED, lift

        lifted = []
        with torch.no_grad():
            for i in range(len(self.variables)):
                bits, pruned = self._bits(i, 4)
                if pruned < LIFT_MIN_PRUNED:
                    continue  # the moments are looked up only where a lift may pay
                v = self._moments(i)[0]
                if v.dtype == torch.float32 and v.device.type == "cpu":
                    lift(v, bits)
                    lifted.append(i)
        return lifted

    def _unlift(self, lifted: list[int]) -> None:
        import torch

        with torch.no_grad():
            for i in lifted:
                for v in self._moments(i):
                    self._zero_pruned(i, v)

    # -- on the host, at events ------------------------------------------------------------
    def set_masks(self, masks: Sequence[Any]) -> None:
        """Store new masks and zero the pruned entries of weights and optimizer state."""
        for i, (v, mask) in enumerate(zip(self.variables, masks)):
            self.masks[i].assign(ops.copy(mask))  # a buffer of its own: JAX donates the step's state
            for target in (v, *self.state[i]):
                target.assign(ops.where(mask, target.value, 0.0))

    # -- saving: the optimizer's own variables only ------------------------------------------
    def _plain(self, optimizer: Any) -> list[Any]:
        """``optimizer.variables`` without the hook's (they come last: the hook is installed after build)."""
        mine = {id(v) for v in [*self.masks, *self.grads, self.stamp]}
        return [v for v in optimizer.variables if id(v) not in mine]

    def _save_plain(self, optimizer: Any, store: Any) -> None:
        """``Optimizer.save_own_variables`` of the optimizer without fggp: the file loads in plain Keras."""
        for i, variable in enumerate(self._plain(optimizer)):
            store[str(i)] = variable.numpy()

    def _load_plain(self, optimizer: Any, store: Any) -> None:
        """``Optimizer.load_own_variables`` into the optimizer's own variables (e.g. BackupAndRestore)."""
        plain = self._plain(optimizer)
        if len(store.keys()) != len(plain):
            type(optimizer).load_own_variables(optimizer, store)  # Keras's own warning and skip
            return
        for i, variable in enumerate(plain):
            variable.assign(store[str(i)])

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
