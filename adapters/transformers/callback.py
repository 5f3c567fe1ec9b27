"""``PruningCallback``: gradual pruning inside ``transformers.Trainer`` (a ``TrainerCallback``).

Data flow: ``on_train_begin`` (after the Trainer created its optimizer, loaded a checkpoint's
weights and optimizer state, and restored ``state.global_step``) attaches ``fggp.torch.attach``
to the torch optimizer inside accelerate's wrapper; from then on its step hooks count every
applied optimizer step (one per ``global_step``: the Trainer steps once per accumulation
cycle) and prune at events. ``on_save`` writes the pruning state into the checkpoint folder
(``checkpoint-<step>/fggp_pruner.pt``); ``on_train_begin`` of a resumed run reads it back, so
later masks equal those of an uninterrupted run. ``on_log`` adds ``sparsity`` to the logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.pytorch_utils import Conv1D

from fggp.torch.params import PrunableSpec
from fggp.torch.trainer_support import FrameworkPruning, PruningAccess, unwrap_optimizer
from fggp_core.distribution import SparseStart
from fggp_core.errors import ConfigError
from fggp_core.methods import Method
from fggp_core.pruner import EventReport
from fggp_core.schedule import Schedule

__all__ = ["PruningCallback", "STATE_FILE", "default_prunable"]

STATE_FILE = "fggp_pruner.pt"
"""The pruning state's file name inside each Trainer checkpoint folder."""


def default_prunable(model: nn.Module) -> list[str]:
    """Names of the default prunable parameters of a transformers model.

    The ``weight`` of every ``nn.Linear`` and transformers ``Conv1D`` (GPT-2's projections)
    inside the repeated blocks of ``model.base_model`` (an ``nn.ModuleList`` such as
    ``bert.encoder.layer`` or ``transformer.h``): the attention and MLP projections. Left
    dense: embeddings, norms, biases, the pooler, the classifier / LM head (and weights tied
    to the input embeddings).
    """
    base = getattr(model, "base_model", model)
    prefix = next((name + "." for name, module in model.named_modules() if module is base and name), "")
    in_blocks: set[int] = set()
    for blocks in base.modules():
        if isinstance(blocks, nn.ModuleList):
            in_blocks.update(id(m) for block in blocks for m in block.modules())
    head = getattr(model, "get_output_embeddings", lambda: None)()
    tied = {id(head.weight)} if isinstance(getattr(head, "weight", None), nn.Parameter) else set()
    names = []
    for name, module in base.named_modules():
        weight = getattr(module, "weight", None)
        if (
            isinstance(module, (nn.Linear, Conv1D))
            and id(module) in in_blocks
            and isinstance(weight, nn.Parameter)
            and weight.requires_grad
            and id(weight) not in tied
        ):
            names.append(f"{prefix}{name}.weight")
    return names


class PruningCallback(PruningAccess, TrainerCallback):
    """Prune during ``Trainer.train`` with ``method`` on ``schedule``.

    ``method``/``schedule``: fggp objects (``FGGP()``, ``Magnitude()``, ``PolynomialSchedule``,
    ...); steps count optimizer steps, i.e. the Trainer's ``state.global_step`` (with gradient
    accumulation one step per accumulation cycle; ``max_steps`` and epochs do not matter).
    ``scope``/``distribution``/``skip_nonfinite``/``sparse_start``: as ``fggp.torch.attach``.
    ``prunable``: None for ``default_prunable(model)`` (attention and MLP projection weights);
    or a list of parameter names; or a predicate ``(name, parameter) -> bool``. ``on_event``:
    called with each event's ``EventReport`` (e.g. ``fggp.torch.TensorBoard(writer)``).

    ``sparsity`` is added to every Trainer log (``trainer.state.log_history``). The Trainer's own
    reporting callbacks (``report_to``) run before user callbacks and so do not see it; for
    them, move this callback first (``trainer.callback_handler.callbacks.insert(0,
    trainer.pop_callback(callback))``) or use ``on_event``.

    Refused at train start (``ConfigError``, before any step): DeepSpeed or FSDP through the
    Trainer, an optimizer that is not one torch optimizer (e.g. layer-wise optimizers), no
    prunable parameter.
    """

    def __init__(
        self,
        method: Method,
        schedule: Schedule,
        *,
        scope: str = "global",
        prunable: PrunableSpec = None,
        sparse_start: SparseStart | None = None,
        distribution: str = "uniform",
        skip_nonfinite: bool = False,
        on_event: Callable[[EventReport], Any] | None = None,
    ) -> None:
        self.pruning = FrameworkPruning(
            method, schedule, scope=scope, prunable=prunable, sparse_start=sparse_start,
            distribution=distribution, skip_nonfinite=skip_nonfinite, on_event=on_event,
        )

    # -- Trainer events ------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        _refuse_unsupported(args, model, optimizer)
        if self.pruning.pruner is None and self.pruning.prunable is None:
            self.pruning.prunable = default_prunable(model) or None
            if self.pruning.prunable is None:
                raise ConfigError(
                    "prunable", None, f"{type(model).__name__} has no Linear/Conv1D weight in repeated blocks; "
                    "pass prunable= (a list of parameter names or a predicate (name, parameter) -> bool)",
                )
        step = int(state.global_step)
        saved = _checkpoint_state(args, step) if step > 0 else None
        if saved is not None:
            self.pruning.load_state_dict(saved)
        pruner = self.pruning._attach(model, optimizer)
        if step > 0 and saved is None and pruner.step != step:
            self.pruning._follow(step, model)
        self.pruning._prune_at_start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        pruner = self.pruning.pruner
        if pruner is not None and pruner.step != state.global_step:
            # The Trainer counts a step the fp16 GradScaler skipped; the pruner (hooks) does not. Follow the
            # Trainer, so events stay at the global steps the user configured.
            pruner.core.sync_step(int(state.global_step))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.pruning.pruner is None or logs is None:
            return
        logs["sparsity"] = self.pruning.sparsity()
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["sparsity"] = logs["sparsity"]

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pruning.pruner is None or not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            torch.save(self.pruning.state_dict(), os.path.join(folder, STATE_FILE))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruning._detach()  # weights keep their exact zeros; a later train() re-attaches


def _checkpoint_state(args: Any, step: int) -> dict[str, Any] | None:
    """The state saved at ``step``: ``args.resume_from_checkpoint`` or ``output_dir/checkpoint-<step>``."""
    folders = [getattr(args, "resume_from_checkpoint", None), os.path.join(args.output_dir, f"checkpoint-{step}")]
    for folder in folders:
        path = os.path.join(folder, STATE_FILE) if isinstance(folder, str) else None
        if path and os.path.isfile(path):
            saved = torch.load(path, weights_only=True)
            if int(saved.get("step", -1)) == step:
                return saved
    return None


def _refuse_unsupported(args: Any, model: Any, optimizer: Any) -> None:
    if getattr(args, "deepspeed", None) or getattr(args, "fsdp", None):
        raise ConfigError(
            "TrainingArguments", "deepspeed/fsdp", "fggp.transformers does not support DeepSpeed or FSDP yet: "
            "sharded parameters need the sharded selection (train without them, or with DDP)",
        )
    if not isinstance(model, nn.Module):
        raise ConfigError("model", type(model).__name__, "must be a torch.nn.Module")
    if optimizer is None:
        raise ConfigError("optimizer", None, "the Trainer created no optimizer")
    inner = unwrap_optimizer(optimizer)
    if type(inner).__name__ == "LayerWiseDummyOptimizer":
        raise ConfigError(
            "optimizer", "layer-wise optimizers", "must be one torch optimizer for all parameters (not one per layer)"
        )
