"""fggp.lightning: gradual pruning inside PyTorch Lightning's ``Trainer.fit``.

- ``PruningCallback(method, schedule, *, prunable=..., on_event=..., log_name="sparsity")``: a
  ``lightning.pytorch.Callback`` whose state (step, masks) lives in Lightning checkpoints, so
  ``fit(ckpt_path=...)`` resumes exactly; logs the reached sparsity with ``pl_module.log``.

Needs ``pip install "fggp[lightning]"``.
"""

from .callback import PruningCallback

__all__ = ["PruningCallback"]
