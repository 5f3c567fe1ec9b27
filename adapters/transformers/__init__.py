"""fggp.transformers: gradual pruning inside the Hugging Face ``transformers.Trainer``.

- ``PruningCallback(method, schedule, *, prunable=..., on_event=...)``: a ``TrainerCallback``
  that prunes the optimizer steps of ``trainer.train()``, keeps its state in each checkpoint
  folder (``fggp_pruner.pt``) and logs ``sparsity``.
- ``default_prunable(model)``: the attention and MLP projection weights of a transformers model.

Needs ``pip install "fggp[transformers]"``.
"""

from .callback import STATE_FILE, PruningCallback, default_prunable

__all__ = ["STATE_FILE", "PruningCallback", "default_prunable"]
