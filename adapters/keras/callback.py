"""``PruningCallback``: gradual pruning inside ``model.fit`` on any Keras 3 backend.

Data flow: ``on_train_begin`` finds the prunable variables (canonical order: ``model.weights``),
sets up masks (all kept, a sparse start, a restored state, or the zeros of a run in progress),
follows ``optimizer.iterations`` (``Pruner.sync_step``) and installs an ``OptimizerHook``
(capture.py) that captures gradients and keeps pruned entries at zero inside the compiled step.
``on_train_batch_end`` counts each optimizer step (``Pruner.advance``); at an event it hands this
step's weights and gradients (backend tensors) to ``Pruner.prune``, whose selection runs on the
Keras backend (backend.py), then applies the new masks to weights, the hook's mask variables and
the optimizer's slots. ``on_train_end`` re-masks and uninstalls the hook. The callback only calls
the pruner's methods; it never assigns its fields (it replaces its own pruner when it binds to
another model or loads a state).

Edges: a model that ``fit`` itself builds (tensorflow, no ``Input``) is set up after its first
step; under mixed precision the host counts batches between events and, at each possible event,
checks ``optimizer.iterations`` (the loss scaler skips overflowing steps), following it step by
step until the event's step is really reached.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

import fggp_core
from fggp_core import ConfigError, EventReport, InputMismatchError, Method, Pruner, Schedule, SparseStart
from fggp_core.prunable import predicate_arity

from .backend import KERAS
from .capture import OptimizerHook, hook_of

__all__ = [
    "PruningCallback",
    "check_prunable",
    "default_prunable",
    "prunable_variables",
    "sparsity_report",
    "strip_pruning",
]

PRUNABLE_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
Predicate = Callable[[str, Any], bool]
Prunable = Predicate | Callable[[Any], bool] | Sequence[str] | None
_ALLOWED = (
    "None (the kernels of Dense, EinsumDense and Conv*/Conv*Transpose layers), a list of variable paths "
    "(variable.path), or a predicate (path, variable) -> bool"
)


def default_prunable(model: keras.Model) -> set[int]:
    """ids of the trainable kernels of the model's Dense, EinsumDense and Conv* layers.

    Never biases, normalisation parameters or embeddings (``Embedding`` is not in the set).
    """
    kernels = set()
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, PRUNABLE_LAYERS):
            kernel = getattr(layer, "_kernel", None)  # Dense/EinsumDense keep the variable here (kernel may add LoRA)
            kernel = getattr(layer, "kernel", None) if kernel is None else kernel
            if isinstance(kernel, keras.Variable) and kernel.trainable:
                kernels.add(id(kernel))
    return kernels


def check_prunable(prunable: object) -> Predicate | list[str] | None:
    """``prunable`` as None, a list of paths or a two-argument predicate; ConfigError otherwise.

    A one-argument predicate ``variable -> bool`` (the old form) still works, with a
    ``DeprecationWarning``.
    """
    if prunable is None:
        return None
    if isinstance(prunable, (list, tuple)) and all(isinstance(p, str) for p in prunable):
        return list(prunable)
    if callable(prunable) and not isinstance(prunable, type):
        arity = predicate_arity(prunable)
        if arity == 2:
            return prunable  # type: ignore[return-value]
        if arity == 1:
            warnings.warn(
                "fggp: prunable=variable -> bool is deprecated; pass prunable=(path, variable) -> bool",
                DeprecationWarning,
                stacklevel=3,
            )
            old = prunable

            def predicate(path: str, variable: Any) -> bool:
                return old(variable)  # type: ignore[call-arg]

            return predicate
    raise ConfigError("prunable", prunable, f"must be {_ALLOWED}")


def prunable_variables(model: keras.Model, prunable: Prunable = None) -> dict[str, Any]:
    """path -> variable for the prunable variables of ``model``, in ``model.weights`` order.

    ``prunable``: None (the default set: trainable kernels of Dense, EinsumDense and
    Conv1D/2D/3D(Transpose) layers; Embedding excluded), a list of variable paths
    (``variable.path``, e.g. "sequential/dense/kernel"), or a predicate
    ``(path, variable) -> bool``. Raises ConfigError for an unknown path, a non-trainable or
    non-float chosen variable, or when nothing is prunable.
    """
    prunable = check_prunable(prunable)
    weights = {v.path: v for v in model.weights}
    if prunable is None:
        kernels = default_prunable(model)
        chosen = {p: v for p, v in weights.items() if id(v) in kernels}
    elif callable(prunable):
        chosen = {p: v for p, v in weights.items() if prunable(p, v)}
    else:
        unknown = [p for p in prunable if p not in weights]
        if unknown:
            raise ConfigError("prunable", unknown, f"must be variable paths of the model, e.g. {list(weights)[:4]}")
        chosen = {p: v for p, v in weights.items() if p in set(prunable)}
    if not chosen:
        raise ConfigError("prunable", prunable, f"matched no variable of the model; allowed: {_ALLOWED}")
    for path, v in chosen.items():
        if not v.trainable:
            raise ConfigError("prunable", path, "must be trainable variables (the optimizer updates them)")
        if keras.backend.standardize_dtype(v.dtype) not in fggp_core.FLOAT_DTYPES:
            raise ConfigError("prunable", path, f"has dtype {v.dtype}; allowed: {fggp_core.FLOAT_DTYPES}")
    return chosen


@keras.saving.register_keras_serializable(package="fggp")
class PruningCallback(keras.callbacks.Callback):
    """Prune the model during ``model.fit`` with ``method`` on ``schedule``.

    Arguments are those of ``fggp_core.Pruner`` (``method``, ``schedule``, ``scope``,
    ``distribution``, ``skip_nonfinite``, ``allow_empty``) plus ``prunable`` (see ``prunable_variables``) and
    ``sparse_start`` (a ``SparseStart``: a seeded random mask applied before training).
    Steps are the optimizer's iterations: a resumed ``fit`` (``initial_epoch``) continues the
    schedule from ``optimizer.iterations``. ``events`` lists the ``EventReport`` of every event.
    ``on_event``: called with each ``EventReport`` (step, target and reached sparsity, per-variable
    density, seconds), e.g. to write it to a logger. At each epoch end the callback adds
    ``sparsity`` (reached, over the prunable variables) to the epoch ``logs``, so ``History``,
    ``CSVLogger`` and ``keras.callbacks.TensorBoard`` record it: list this callback before those
    in ``callbacks=[...]`` (Keras passes one ``logs`` dict to the callbacks in order; ``History``
    always comes last).
    """

    def __init__(
        self,
        method: Method,
        schedule: Schedule,
        *,
        scope: str = "global",
        prunable: Prunable = None,
        sparse_start: SparseStart | None = None,
        distribution: str = "uniform",
        skip_nonfinite: bool = False,
        on_event: Callable[[EventReport], Any] | None = None,
        allow_empty: bool = False,
    ) -> None:
        super().__init__()
        self.pruner = Pruner(
            method, schedule, scope=scope, distribution=distribution, skip_nonfinite=skip_nonfinite, backend=KERAS,
            on_event=on_event, allow_empty=allow_empty,
        )
        self.prunable = check_prunable(prunable)
        if sparse_start is not None and not isinstance(sparse_start, SparseStart):
            raise ConfigError("sparse_start", sparse_start, "must be None or SparseStart(sparsity, distribution, seed)")
        self.sparse_start = sparse_start
        self.events: list[EventReport] = []
        self.variables: dict[str, Any] = {}
        self._hook: OptimizerHook | None = None
        self._steps: dict[bool, Any] = {}
        self._state: Mapping[str, Any] | None = None  # a loaded state_dict, applied when training starts
        self._bound: keras.Model | None = None  # the model whose variables the masks belong to
        self._pending = False  # the model is not built yet (tensorflow builds it in the first step)
        self._start = 0  # optimizer.iterations when fit began
        self._skips = False  # mixed precision: the loss scaler may skip a step (iterations stays)
        self._lagging = False  # a skipped step was seen: follow optimizer.iterations until the next event
        self._iterations_index = 0
        self._first = False  # the first batch of a fit is still to come

    # -- reports ---------------------------------------------------------------------------
    @property
    def masks(self) -> dict[str, np.ndarray]:
        """variable path -> bool mask on the host (True = kept)."""
        return {n: np.array(KERAS.to_host(m), dtype=bool) for n, m in self.pruner.masks.items()}

    def sparsity(self) -> float:
        """Pruned fraction over all prunable entries."""
        return self.pruner.sparsity()

    def layer_report(self) -> dict[str, dict[str, float]]:
        """Per variable path: ``size``, ``pruned`` and ``density``."""
        return self.pruner.layer_report()

    # -- configuration and state -----------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        if callable(self.prunable):
            raise ConfigError("prunable", self.prunable, "a predicate cannot be serialised; pass a list of paths")
        config = self.pruner.config()
        config["sparse_start"] = None if self.sparse_start is None else self.sparse_start.to_config()
        config["prunable"] = self.prunable
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PruningCallback:
        start = config.get("sparse_start")
        return cls(
            fggp_core.method_from_config(config["method"]),
            fggp_core.schedule_from_config(config["schedule"]),
            scope=config.get("scope", "global"),
            prunable=config.get("prunable"),
            sparse_start=None if start is None else SparseStart(**start),
            distribution=config.get("distribution", "uniform"),
            skip_nonfinite=config.get("skip_nonfinite", False),
            allow_empty=config.get("allow_empty", False),
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain data (numbers, strings, NumPy bool masks) to resume pruning later."""
        if not self.pruner.masks:
            raise InputMismatchError("nothing to save yet: the callback has not started training")
        return self.pruner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore masks and step from ``state_dict()``; they are applied when training (re)starts.

        Masks are matched to the prunable variables in canonical order; a name matches a path equal
        to it or differing only by leading components (a model saved and loaded with
        ``keras.models.load_model`` has ``dense/kernel`` for ``sequential/dense/kernel``). A state that
        does not fit (names, shapes, configuration) raises before anything changes: here, or at
        ``on_train_begin`` before the optimizer is touched.
        """
        loaded = self._new_pruner()
        loaded.load_state_dict(state)  # the core's checks, on a pruner of its own: nothing changes on failure
        if self._hook is not None and self._hook.installed:  # during fit: apply now
            self.pruner = self._rebased(state)
            self._hook.set_masks([self.pruner.masks[n] for n in self.variables])
            return
        self.pruner, self._state = loaded, state

    # -- training --------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ConfigError("model.optimizer", None, "compile the model with an optimizer before fit")
        if int(getattr(model, "steps_per_execution", 1)) != 1:
            raise ConfigError("steps_per_execution", model.steps_per_execution, "must be 1: events follow single steps")
        if getattr(optimizer, "gradient_accumulation_steps", None):
            raise ConfigError(
                "gradient_accumulation_steps", optimizer.gradient_accumulation_steps, "is not supported (None)"
            )
        self._start = int(keras.ops.convert_to_numpy(optimizer.iterations))
        # On tensorflow a model without Input (Sequential, subclassed) is built inside the first traced
        # step (jax and torch build it before fit starts): set up after that step instead.
        self._pending = not model.built
        if not self._pending:
            self._begin()

    def _begin(self) -> None:
        """Bind to the model: variables, masks, step, hook and compiled steps (nothing changed on failure)."""
        model = self.model
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self._skips = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._lagging = False
        # A LossScaleOptimizer (mixed precision) applies unscaled, finite gradients through its inner one.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        variables = prunable_variables(model, self.prunable)
        trained = {optimizer._var_key(v) for v in optimizer._trainable_variables}
        untrained = [p for p, v in variables.items() if optimizer._var_key(v) not in trained]
        if untrained:
            raise ConfigError("prunable", untrained, "must be variables the optimizer trains")
        self.variables = variables
        self._init_masks(int(keras.ops.convert_to_numpy(optimizer.iterations)))
        self._hook = OptimizerHook(
            optimizer, list(self.variables.values()), capture=self.pruner.method.needs_grads, outer=[model.optimizer]
        )
        self._hook.install()
        self._hook.set_masks([self.pruner.masks[n] for n in self.variables])
        self._iterations_index = next(i for i, v in enumerate(model.optimizer.variables) if v is optimizer.iterations)
        self._steps = {}
        self._use_step(capture=False)
        self._first = True
        schedule = self.pruner.schedule
        if self.pruner.step > self._start and (
            self.pruner.is_event() or (self._start == 0 and schedule.is_event(0) and _total(self.pruner.event_k(0)))
        ):
            # Set up after the first step (a model that fit built): the events of steps 0 and 1 run now.
            if self.pruner.method.needs_grads:
                self._abort()
                raise ConfigError(
                    "schedule", schedule,
                    f"an event before step 2 has no gradients for {self.pruner.method} when fit builds the model; "
                    "build it before fit (keras.Input, model.build or one call)",
                )
            self._event()
        if self.pruner.step == 0 and schedule.is_event(0) and not self.events and _total(self.pruner.event_k(0)):
            # An event before the first step (e.g. OneShotSchedule(s, step=0)); skipped when it prunes nothing.
            if self.pruner.method.needs_grads:
                self._abort()
                raise ConfigError("schedule", schedule, f"an event at step 0 has no gradients for {self.pruner.method}")
            self._event()

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._first:
            self._first = False
            self._follow_restore()
        if self._hook is not None and self._hook.capture:
            self._use_step(capture=self.pruner.schedule.is_event(self.pruner.step + 1))

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._pending:  # the first step built the model: bind to it now
            self._pending = False
            self._begin()
            return
        if self._lagging and self._iterations() == self.pruner.step:
            return  # the loss scaler skipped this step too: no optimizer step happened
        # The optimizer step happened: it counts even if the event after it fails, as
        # optimizer.iterations does (a later fit resumes from there).
        if not self.pruner.advance():
            return
        if self._skips:  # only at (possible) events: the host counts batches, the loss scaler may skip some
            iterations = self._iterations()
            self._lagging = iterations != self.pruner.step
            if self._lagging:  # follow the optimizer step by step until it reaches this event
                self.pruner.sync_step(iterations)
                return
        self._event()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._skips and self._hook is not None:
            self.pruner.sync_step(self._iterations())  # undo the count of steps the loss scaler skipped
        if logs is not None and self.pruner.masks:
            logs["sparsity"] = self.pruner.sparsity()

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._pending = self._first = False
        if self._hook is None:
            return
        if self._skips:
            self.pruner.sync_step(self._iterations())
        # Re-mask: the optimizer may have overwritten weights after the last step (EMA).
        self._hook.set_masks([self.pruner.masks[n] for n in self.variables])
        self._abort()

    # -- internals -------------------------------------------------------------------------
    def _init_masks(self, iterations: int) -> None:
        """Masks for ``self.variables``: a loaded state, this callback's own (same model), or new ones.

        A callback given another model than last time starts afresh on it (new pruner: masks, step,
        ``events``), so nothing of the first model leaks. New masks are all kept, a sparse start, or,
        when fit starts on a run in progress (iterations > 0) without a state, the zeros of the weights.
        """
        model = self.model
        restored = self._state is not None
        if restored:
            pruner = self._rebased(self._state)  # raises before the optimizer is touched
            if list(pruner.masks) != list(self.pruner.masks):
                self.pruner = pruner
        elif self._bound is not None and self._bound is not model:
            self.pruner, self.events = self._new_pruner(), []
        if not restored and (not self.pruner.masks or list(self.pruner.masks) != list(self.variables)):
            weights = {p: v.value for p, v in self.variables.items()}
            self.pruner.init_masks(weights, self.sparse_start, from_zeros=self._start > 0)
        if restored and self.pruner.step != iterations:
            warnings.warn(
                f"fggp: restored pruning state is at step {self.pruner.step}, the optimizer at {iterations}; "
                "following the optimizer",
                RuntimeWarning,
                stacklevel=4,
            )
        self.pruner.sync_step(iterations)
        self._state, self._bound = None, model

    def _new_pruner(self) -> Pruner:
        """A pruner with this callback's configuration and no state."""
        p = self.pruner
        return Pruner(
            p.method, p.schedule, scope=p.scope, distribution=p.distribution, skip_nonfinite=p.skip_nonfinite,
            backend=KERAS, on_event=p.on_event, allow_empty=p.allow_empty,
        )

    def _rebased(self, state: Mapping[str, Any]) -> Pruner:
        """A new pruner holding ``state`` with its masks named by this model's variable paths.

        Masks pair with variables in canonical order; names must agree up to leading path components
        (``load_model`` drops the model-name prefix) and shapes exactly."""
        masks, paths = state["masks"], list(self.variables)
        names = list(masks)
        if len(names) != len(paths) or not all(
            a == b or a.endswith("/" + b) or b.endswith("/" + a) for a, b in zip(names, paths)
        ):
            raise InputMismatchError(f"state masks {names} differ from the prunable variables {paths}")
        for a, b in zip(names, paths):
            if tuple(np.shape(masks[a])) != tuple(self.variables[b].shape):
                raise InputMismatchError(
                    f"state mask {a!r} has shape {tuple(np.shape(masks[a]))}, but variable {b!r} has shape "
                    f"{tuple(self.variables[b].shape)}: the state is of another model"
                )
        pruner = self._new_pruner()
        pruner.load_state_dict({**state, "masks": {b: masks[a] for a, b in zip(names, paths)}})
        return pruner

    def _follow_restore(self) -> None:
        """Before the first step: a callback after this one in ``callbacks`` may have restored weights
        and iterations in its ``on_train_begin`` (``BackupAndRestore``); join that run (its zeros)."""
        iterations = self._iterations()
        if iterations == self.pruner.step:
            return
        self.pruner.init_masks({p: v.value for p, v in self.variables.items()}, from_zeros=True)
        self.pruner.sync_step(iterations)
        self._start = iterations
        self._hook.set_masks([self.pruner.masks[n] for n in self.variables])  # type: ignore[union-attr]

    def _iterations(self) -> int:
        """``optimizer.iterations`` now; during fit on JAX read from the step's state (variables are stale).

        ``self._model``: on JAX, Keras's ``Callback.model`` syncs the whole training state."""
        model = self._model
        state = getattr(model, "_jax_state", None)
        if state and not getattr(model, "_jax_state_synced", True):
            return int(np.asarray(state["optimizer_variables"][self._iterations_index]))
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))

    def _event(self) -> None:
        """Select with this step's gradients and updated weights; apply or leave all untouched.

        Runs the event of the pruner's current step (``advance`` already counted the step)."""
        model, hook = self.model, self._hook
        if hasattr(model, "jax_state_sync"):
            model.jax_state_sync()  # the jitted step's state back into the variables
        weights = {p: v.value for p, v in self.variables.items()}
        grads = None
        try:
            if self.pruner.method.needs_grads:
                iterations = int(keras.ops.convert_to_numpy(self._hook.optimizer.iterations))  # type: ignore[union-attr]
                captured = hook.captured_at()  # type: ignore[union-attr]
                if captured == 0 or captured != iterations:
                    raise ConfigError(
                        "method", self.pruner.method.name,
                        "needs gradients, but the train step did not call optimizer.apply/apply_gradients/"
                        "stateless_apply, so none were captured; use a method without gradients "
                        "(Magnitude, GlobalMP, Random)",
                    )
                grads = {p: g.value for p, g in zip(self.variables, hook.grads)}  # type: ignore[union-attr]
            report = self.pruner.prune(weights, grads)
        except Exception:
            self._abort()
            raise
        self.events.append(report)
        if not report.skipped:
            hook.set_masks([self.pruner.masks[n] for n in self.variables])  # type: ignore[union-attr]

    def _use_step(self, capture: bool) -> None:
        """Make ``model.train_function`` the compiled step that does (not) capture gradients."""
        hook = self._hook
        if hook.capture_now == capture and capture in self._steps:  # type: ignore[union-attr]
            return
        hook.capture_now = capture  # type: ignore[union-attr]
        if capture not in self._steps:
            self._steps[capture] = _new_train_function(self.model)  # traced at its first call, with this flag
        self.model.train_function = self._steps[capture]

    def _abort(self) -> None:
        """Uninstall the hook and drop the compiled step that used it."""
        if self._hook is not None and self._hook.installed:
            self._hook.uninstall()
        self._hook = None
        self._steps = {}
        if self.model is not None:
            self.model.train_function = None


def _new_train_function(model: keras.Model) -> Any:
    """A train function of its own: jax.jit caches traces by function, so wrap train_step anew."""
    step = type(model).train_step

    def train_step(*args: Any) -> Any:
        return step(model, *args)

    model.__dict__["train_step"] = train_step
    try:
        model.make_train_function(force=True)
    finally:
        del model.__dict__["train_step"]
    return model.train_function


def _total(k: int | Mapping[str, int]) -> int:
    return sum(k.values()) if isinstance(k, Mapping) else int(k)


def strip_pruning(model: keras.Model) -> keras.Model:
    """Remove any fggp hook left on ``model.optimizer`` (e.g. after an interrupted fit).

    After a completed ``fit`` there is none: the saved model is plain Keras. Returns ``model``.
    """
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    hook = hook_of(optimizer) if optimizer is not None else None
    if hook is not None:
        hook.uninstall()
        model.train_function = None
    return model


def sparsity_report(model: keras.Model, prunable: Prunable = None) -> dict[str, dict[str, float]]:
    """Per prunable variable of any model (no fggp state needed): ``size``, ``zeros``, ``density``."""
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()  # during fit on JAX the variables hold no values until synced
    report = {}
    for path, v in prunable_variables(model, prunable).items():
        values = np.asarray(keras.ops.convert_to_numpy(v.value))
        zeros = int(values.size - np.count_nonzero(values))
        report[path] = {"size": int(values.size), "zeros": zeros, "density": 1.0 - zeros / max(1, values.size)}
    return report
