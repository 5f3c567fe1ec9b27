"""``PruningCallback``: gradual pruning inside ``lightning.pytorch.Trainer.fit``.

Data flow: Lightning restores a checkpoint's callback states (``load_state_dict``, kept until
attached), creates the optimizers, then calls ``on_fit_start``: the callback attaches
``fggp.torch.attach`` to the one torch optimizer (``trainer.optimizers``), applying a restored
state; its step hooks count optimizer steps (``trainer.global_step``; gradient accumulation
steps once per cycle) and prune at events. Lightning then loads the optimizer state (zeros at
pruned entries, as saved). ``state_dict`` puts step and masks into every Lightning checkpoint,
so ``fit(ckpt_path=...)`` continues with the masks of an uninterrupted run. Under DDP every
process selects on identical (all-reduced) weights and gradients, so masks agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import Callback

from fggp.torch.params import PrunableSpec
from fggp.torch.trainer_support import FrameworkPruning, PruningAccess
from fggp_core.distribution import SparseStart
from fggp_core.errors import ConfigError
from fggp_core.methods import Method
from fggp_core.pruner import EventReport
from fggp_core.schedule import Schedule

__all__ = ["PruningCallback"]


class PruningCallback(PruningAccess, Callback):  # PruningAccess first: its state_dict is the state
    """Prune during ``trainer.fit`` with ``method`` on ``schedule`` (steps: optimizer steps = ``global_step``).

    Arguments as ``fggp.torch.attach`` (``prunable`` names are those of
    ``lightning_module.named_parameters()``; None: every Linear/Conv weight) plus ``on_event``
    (called with each ``EventReport``) and ``log_name`` (the name under which
    ``pl_module.log`` records the reached sparsity every training step; None: not logged).
    Refused at fit start (``ConfigError``): several optimizers, manual optimisation with an
    optimizer fggp cannot see, sharded strategies (FSDP, DeepSpeed), no prunable parameter.
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
        log_name: str | None = "sparsity",
    ) -> None:
        self.pruning = FrameworkPruning(
            method, schedule, scope=scope, prunable=prunable, sparse_start=sparse_start,
            distribution=distribution, skip_nonfinite=skip_nonfinite, on_event=on_event,
        )
        self.log_name = log_name

    # -- hooks ---------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        strategy = type(trainer.strategy).__name__
        if "FSDP" in strategy or "DeepSpeed" in strategy:
            raise ConfigError("strategy", strategy, "fggp.lightning does not support sharded strategies yet (use ddp)")
        optimizers = list(trainer.optimizers)
        if len(optimizers) != 1:
            raise ConfigError(
                "configure_optimizers", f"{len(optimizers)} optimizers",
                "fggp.lightning prunes with exactly one optimizer (attach fggp.torch to each one yourself otherwise)",
            )
        self.pruning._attach(pl_module, optimizers[0])

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # Runs after Lightning restored the loops: the pruner (restored step) must agree with global_step.
        pruner = self.pruning.pruner
        if pruner is not None and pruner.step != trainer.global_step:
            if pruner.step == 0:
                self.pruning._follow(trainer.global_step, pl_module)
            else:
                pruner.core.sync_step(int(trainer.global_step))
        self.pruning._prune_at_start()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.log_name is not None and self.pruning.pruner is not None:
            pl_module.log(self.log_name, self.pruning.sparsity(), on_step=True, on_epoch=False, sync_dist=False)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.pruning._detach()  # weights keep their exact zeros; a later fit re-attaches
