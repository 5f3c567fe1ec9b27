"""``attach``: prune during an ordinary PyTorch training loop through optimizer step hooks.

Data flow per optimizer step (the user's ``loss.backward(); optimizer.step()`` is unchanged):

- pre-step hook: gradients of pruned entries are set to 0.0, so the step cannot revive them;
- post-step hook: weights are re-masked, unless the optimizer provably keeps a +0.0 weight with
  0 gradient and state at +0.0 (``masking.keeps_zeros``: SGD, Adam, AdamW), and the step is
  counted (``Pruner.advance``); at an
  event the core selects with this step's gradients and the updated weights (on device,
  ``TorchBackend``), and the new masks are applied to the weights and to every
  per-parameter optimizer state tensor of the weight's shape (momentum, Adam moments, ...).

An optimizer subclass whose ``step`` calls ``super().step()`` fires the hooks once per wrapped
``step`` (see ``TorchPruner._pre_step``): only the outermost call is counted, as one step.

A step that ``torch.amp.GradScaler`` skips is no step: either ``optimizer.step`` is not called
(the hooks do not fire), or, for optimizers that skip internally (``fused=True``), the
scaler's ``found_inf`` is set and the post-step hook ignores the step.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from fggp_core.distribution import SparseStart
from fggp_core.errors import ConfigError, InputMismatchError
from fggp_core.methods import Method
from fggp_core.pruner import EventReport, Pruner
from fggp_core.schedule import Schedule

from .backend import backend_of
from .masking import LIFT_MIN_PRUNED, PrunedEntries, keeps_zeros, lift_targets
from .params import UNSET, PrunableSpec, check_optimizer, prunable_from_alias, prunable_parameters
from .sharding import ShardedTorchBackend, backend_for, check_not_fsdp1, is_dtensor, local

__all__ = ["TorchPruner", "attach", "finalize"]

_ATTACHED: weakref.WeakSet[TorchPruner] = weakref.WeakSet()


def _skipped_by_grad_scaler(optimizer: torch.optim.Optimizer) -> bool:
    """True when GradScaler ran a fused optimizer's step with inf/NaN gradients (a skipped step)."""
    found_inf = getattr(optimizer, "found_inf", None)
    return isinstance(found_inf, torch.Tensor) and bool(found_inf.sum() != 0)


class TorchPruner:
    """A ``fggp_core.Pruner`` driven by one optimizer's step hooks. Built by ``attach``.

    ``masks``: parameter name -> bool tensor on the parameter's device (True = kept).
    ``step``: completed optimizer steps. ``core``: the underlying ``fggp_core.Pruner``.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, core: Pruner, params: dict[str, nn.Parameter]
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.core = core
        self.params = params
        self._pruned = PrunedEntries({}, {})  # the entries to keep at zero, per tensor with some
        self._names = {p: n for n, p in params.items()}
        self._lifted: list[str] = []  # tensors whose pruned Adam second moments hold 1.0 during this step
        self._handles: list[Any] = []
        self._dense_grads: dict[str, torch.Tensor] | None = None  # GraNet: unmasked grads of an event step
        self._started = False  # whether the first optimizer step began (the event at step 0 is due then)
        self._outer_step: Any = None  # torch's hook-calling frame of the step() in progress (see _pre_step)

    # -- what the user reads -------------------------------------------------------------
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Parameter name -> bool mask (True = kept), on the parameter's device. Do not modify."""
        return dict(self.core.masks)

    @property
    def step(self) -> int:
        """Completed optimizer steps counted so far (skipped GradScaler steps excluded)."""
        return self.core.step

    @property
    def last_event(self) -> EventReport | None:
        """The report of the latest event (None before the first)."""
        return self.core.last_event

    @property
    def attached(self) -> bool:
        """Whether the optimizer hooks are registered."""
        return bool(self._handles)

    def sparsity(self) -> float:
        """Pruned fraction of all prunable entries."""
        return self.core.sparsity()

    def layer_report(self) -> dict[str, dict[str, float]]:
        """Per parameter: ``size``, ``pruned`` and ``density`` (kept fraction)."""
        return self.core.layer_report()

    # -- hooks ---------------------------------------------------------------------------
    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # torch wraps the ``step`` of the class of each optimizer it builds with the wrapper that calls these
        # hooks, so ``MyAdam.step`` calling ``super().step()`` runs them twice (once any plain Adam exists in
        # the process): a nested call is part of the outer step, never a step of its own. The outer call is
        # known by its wrapper frame (this hook's caller), not by a depth counter: a step that raised (no
        # post hook) leaves a frame that is no longer on the stack, so the next step is counted.
        wrapper = sys._getframe(1)
        if self._outer_step is not None and _is_caller_of(self._outer_step, wrapper):
            return
        self._outer_step = wrapper
        self._dense_grads = None
        if self.core.method.regrows and self.core.is_event(self.core.step + 1):
            # regrowth ranks pruned entries by |g|: keep this step's gradients before masking them
            self._dense_grads = {n: p.grad.detach().clone() for n, p in self.params.items() if p.grad is not None}
        with torch.no_grad():
            for name in self._pruned:
                grad = self.params[name].grad
                if grad is not None:
                    self._pruned.exact(name, local(grad))  # +0.0 exactly, a NaN there included
            self._lift(optimizer)

    def _lift(self, optimizer: torch.optim.Optimizer) -> None:
        """Pruned Adam second moments to 1.0 for this step (CPU, non-fused: see ``masking``); ``_unlift`` after it."""
        self._unlift()  # left over from a step that raised
        for param in lift_targets(optimizer):
            name = self._names.get(param)
            if name is not None and self._pruned.fraction.get(name, 0.0) >= LIFT_MIN_PRUNED:
                self._pruned.lift(name, local(optimizer.state[param]["exp_avg_sq"]))
                self._lifted.append(name)

    def _unlift(self) -> None:
        """The lifted second moments (and amsgrad's maxima, which took the lifted value) back to +0.0."""
        with torch.no_grad():
            for name in self._lifted:
                state = self.optimizer.state.get(self.params[name], {})
                for key in ("exp_avg_sq", "max_exp_avg_sq"):
                    if isinstance(state.get(key), torch.Tensor):
                        self._pruned.exact(name, local(state[key]))
        self._lifted = []

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if sys._getframe(1) is not self._outer_step:
            return  # the end of a nested super().step(): the outer step ends later (see _pre_step)
        self._outer_step = None  # first: an event that raises below still ends the step
        self._unlift()  # before anything reads the state, a skipped step's included
        if _skipped_by_grad_scaler(optimizer):
            return
        positional = args[1:] if args and args[0] is optimizer else args  # torch passes step's self first
        if kwargs.get("closure", positional[0] if positional else None) is not None:
            # step(closure) ran backward inside the step, after _pre_step: its gradients were never masked,
            # so the update may have moved pruned weights and their state (Lightning always passes one)
            for name in self._pruned:
                self._zero_exactly(name)
        elif not keeps_zeros(optimizer):  # SGD/Adam/AdamW cannot move a +0.0 weight with 0 gradient and state
            self._mask_weights()
        if self.core.advance():  # counted first: a failed event still leaves the step count right
            self._event()

    # -- events --------------------------------------------------------------------------
    def prune_now(self) -> EventReport:
        """Run the event of the current step now, e.g. a one-shot schedule at step 0.

        Gradient methods use the parameters' current ``.grad`` (see the grad-None rule).
        """
        return self._event()

    def _first_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """The event at step 0 (``OneShotSchedule(s)``'s default ``step=0``; a schedule with ``begin_step=0``
        whose sparsity at 0 needs pruning), once, before the first update: on the weights that step starts
        from and its gradients. Nothing happens when ``prune_now()`` or a loaded state got there first."""
        if _skipped_by_grad_scaler(optimizer):
            return  # no step: the next one starts from the same weights
        if self._started:  # once (a hook cannot remove itself while the optimizer iterates over them)
            return
        self._started = True
        k = self.core.event_k(0) if self.core.step == 0 else 0
        if sum(k.values()) if isinstance(k, Mapping) else k:
            self._event()

    def _event_grads(self) -> dict[str, torch.Tensor] | None:
        """This step's gradients. A prunable parameter without one is an error for gradient methods."""
        if not self.core.method.needs_grads:
            return None
        missing = [n for n, p in self.params.items() if p.grad is None]
        if missing:
            raise InputMismatchError(
                f"parameters {missing} have no gradient (grad is None) at the event after step {self.core.step}; "
                f"method {self.core.method.name!r} scores by gradient: every prunable parameter must take part "
                "in the loss of the step that ends at an event (or leave it out with prunable=...)"
            )
        if self._dense_grads is not None and len(self._dense_grads) == len(self.params):
            return self._dense_grads  # unmasked: regrowth needs the gradients of pruned entries
        return {n: p.grad for n, p in self.params.items()}  # type: ignore[misc]

    def _event(self) -> EventReport:
        report = self.core.prune(self.params, self._event_grads())  # pure until it succeeds
        self._dense_grads = None
        if not report.skipped:
            self._apply()
        return report

    # -- applying masks ------------------------------------------------------------------
    def _apply(self) -> None:
        """The core's masks (each on its parameter's device) onto weights, gradients and optimizer state."""
        # per rank: a sharded parameter's block is masked with its mask's block (same placements)
        masks = {n: local(m) for n, m in self.core.masks.items()}
        self._pruned = PrunedEntries(masks, {n: p.dtype for n, p in self.params.items()})
        for name in self._pruned:
            self._zero_exactly(name)

    def _zero_exactly(self, name: str) -> None:
        """+0.0 at the pruned entries of the weight, its gradient and its weight-shaped optimizer state."""
        param = self.params[name]
        with torch.no_grad():
            self._pruned.exact(name, local(param))
            if param.grad is not None:
                self._pruned.exact(name, local(param.grad))
            for value in self.optimizer.state.get(param, {}).values():  # momentum, Adam moments, ...
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    self._pruned.exact(name, local(value))

    def _mask_weights(self) -> None:
        with torch.no_grad():
            for name in self._pruned:
                self._pruned.exact(name, local(self.params[name]))

    # -- state ---------------------------------------------------------------------------
    @property
    def sharded(self) -> bool:
        """Whether the prunable parameters are DTensors (FSDP2): masks are then DTensors too."""
        return isinstance(self.core.backend, ShardedTorchBackend)

    def state_dict(self) -> dict[str, Any]:
        """Step, masks and configuration: loadable with ``torch.load(weights_only=True)``.

        Masks are CPU bool tensors; for sharded parameters they stay DTensors with the
        parameters' placements, for ``torch.distributed.checkpoint`` (``dcp.save``/``dcp.load``),
        which writes each rank's blocks and reshards them on load, to any world size.
        """
        if self.sharded:  # copies: dcp.load writes into the state it is given, never into the live masks
            state = self.core.state_dict(host=False)
            state["masks"] = {n: m.clone() for n, m in state["masks"].items()}
            return state
        state = self.core.state_dict()
        state["masks"] = {n: torch.from_numpy(m) for n, m in state["masks"].items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore step and masks saved by ``state_dict`` and apply them to weights and optimizer state.

        Masks may be tensors, NumPy arrays or nested lists. The configuration (method, schedule,
        scope, ...) must equal this pruner's; on any mismatch nothing changes.
        """
        if not isinstance(state, Mapping):
            raise ConfigError("state", type(state).__name__, "must be a dict from state_dict()")
        masks = state.get("masks")
        if not isinstance(masks, Mapping):
            raise ConfigError("state['masks']", type(masks).__name__, "must map parameter names to bool masks")
        if self.sharded and all(is_dtensor(m) for m in masks.values()):  # from dcp.load: no gathering
            for name, mask in masks.items():
                if mask.dtype != torch.bool:
                    raise InputMismatchError(f"state mask {name!r} has dtype {mask.dtype}; masks must be bool")
            self.core.load_state_dict(state, host=False)
            self._apply()
            return
        host = {n: m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m) for n, m in masks.items()}
        for name, mask in host.items():
            if mask.dtype != np.bool_:
                raise InputMismatchError(f"state mask {name!r} has dtype {mask.dtype}; masks must be bool")
        self.core.load_state_dict({**state, "masks": host})
        self._apply()

    # -- detaching -----------------------------------------------------------------------
    def remove(self) -> None:
        """Detach the optimizer hooks. Weights, masks and optimizer state stay as they are."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        _ATTACHED.discard(self)

    def finalize(self) -> nn.Module:
        """Apply the masks a last time, detach, and return the model: plain, nothing of fggp attached."""
        with torch.no_grad():
            for name in self._pruned:
                self._pruned.exact(name, local(self.params[name]))
        self.remove()
        return self.model

    def __repr__(self) -> str:
        return (
            f"TorchPruner(method={self.core.method!r}, schedule={self.core.schedule!r}, scope={self.core.scope!r}, "
            f"step={self.step}, sparsity={self.sparsity():.4f}, tensors={len(self.params)})"
        )


def attach(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: Method,
    schedule: Schedule,
    *,
    scope: str = "global",
    prunable: PrunableSpec = None,
    sparse_start: SparseStart | None = None,
    distribution: str = "uniform",
    skip_nonfinite: bool = False,
    params: Any = UNSET,
    on_event: Callable[[EventReport], Any] | None = None,
    allow_empty: bool = False,
) -> TorchPruner:
    """Prune ``model`` during training with ``optimizer``; the training loop stays unchanged.

    ``method``/``schedule``: fggp_core objects (e.g. ``FGGP(0.5)``, ``PolynomialSchedule(...)``;
    steps count completed optimizer steps). ``scope``: "global" or "layerwise" (per-layer
    targets from ``distribution``: "uniform" or "erk"). ``prunable``: what is prunable (None:
    the weight of every Linear, Conv1d/2d/3d and ConvTranspose1d/2d/3d that requires grad, never
    an Embedding; or a list of names from ``model.named_parameters()``; or a predicate
    ``(name, parameter) -> bool``). ``params``: the deprecated name of ``prunable`` (a list, or
    a predicate ``name -> bool``; warns ``DeprecationWarning``). ``sparse_start``: a
    ``SparseStart`` random initial mask, applied to the weights now. ``skip_nonfinite``: skip
    (with a warning) an event whose scores hold NaN/inf instead of raising
    ``NonFiniteScoreError``. ``on_event``: called with each event's ``EventReport`` (step, target
    and reached sparsity, per-tensor density, seconds) for loggers, e.g. ``fggp.torch.TensorBoard``.
    ``allow_empty``: let layerwise targets prune a tensor entirely (default: each keeps one entry).
    Raises ``ConfigError``/``InputMismatchError`` on bad input, before anything is changed.
    """
    spec, argument = prunable_from_alias(prunable, params)
    check_not_fsdp1(model)
    chosen = prunable_parameters(model, spec, argument=argument)
    check_optimizer(optimizer, chosen)
    # DTensor parameters (FSDP2): each rank selects on its blocks; CPU tensors: NumPy's kernels (faster there)
    backend = backend_for(chosen, backend_of(list(chosen.values())))
    if any(p.optimizer is optimizer and p.attached for p in _ATTACHED):
        raise ConfigError(
            "optimizer", type(optimizer).__name__, "already has a fggp pruner attached; remove() it first"
        )
    core = Pruner(
        method, schedule, scope=scope, distribution=distribution, skip_nonfinite=skip_nonfinite, backend=backend,
        on_event=on_event, allow_empty=allow_empty,
    )
    core.init_masks(chosen, sparse_start)
    pruner = TorchPruner(model, optimizer, core, chosen)
    pruner._apply()
    # An event at step 0 runs once, before the first update (registered first: before the grads are masked).
    first = [optimizer.register_step_pre_hook(pruner._first_step)] if core.schedule.is_event(0) else []
    pruner._handles = [
        *first,
        optimizer.register_step_pre_hook(pruner._pre_step),
        optimizer.register_step_post_hook(pruner._post_step),
    ]
    _ATTACHED.add(pruner)
    return pruner


def finalize(target: nn.Module | TorchPruner) -> nn.Module:
    """Make pruning permanent: apply the masks, detach every pruner of this model, return the model.

    Accepts the model (or a pruner). fggp never changes a model's modules or parameters'
    identity, so the result is a plain ``nn.Module``, ready for ``torch.save`` or export.
    """
    if isinstance(target, TorchPruner):
        return target.finalize()
    if not isinstance(target, nn.Module):
        raise ConfigError("target", type(target).__name__, "must be a torch.nn.Module or a TorchPruner")
    mine = [p for p in _ATTACHED if _unwrapped(p.model) is _unwrapped(target)]
    if not mine:
        ids = {id(q) for q in target.parameters()}
        other = [p for p in _ATTACHED if p.attached and any(id(q) in ids for q in p.params.values())]
        if other:
            raise ConfigError(
                "target", type(target).__name__,
                f"is part of the model a pruner was attached to ({type(other[0].model).__name__}, pruning "
                f"{list(other[0].params)[:4]}...): pass that model, or the pruner itself (pruner.finalize())",
            )
    for pruner in mine:
        pruner.finalize()
    return target


def _is_caller_of(frame: Any, inner: Any) -> bool:
    """Whether ``frame`` is on the call stack above ``inner`` (both Python frames)."""
    inner = inner.f_back
    while inner is not None:
        if inner is frame:
            return True
        inner = inner.f_back
    return False


def _unwrapped(model: nn.Module) -> nn.Module:
    """The user's module inside ``torch.compile`` (``_orig_mod``) and DDP/DataParallel (``module``) wrappers."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
