"""``TensorBoard``: an ``on_event`` hook that writes each event's report as TensorBoard scalars."""

from __future__ import annotations

import math
from typing import Any

from fggp_core.errors import ConfigError
from fggp_core.pruner import EventReport

__all__ = ["TensorBoard"]


class TensorBoard:
    """Pass as ``on_event=`` (``fggp.torch.attach``, the Trainer/Lightning callbacks) to log events.

    ``writer``: anything with ``add_scalar(tag, value, step)`` (a
    ``torch.utils.tensorboard.SummaryWriter``), or a log directory (str) for a new
    ``SummaryWriter``, which needs the ``tensorboard`` package. Per event, at the event's
    optimizer step: ``{prefix}/sparsity`` (reached), ``{prefix}/target_sparsity``,
    ``{prefix}/event_seconds`` and ``{prefix}/density/<tensor>`` (kept fraction per tensor).
    """

    def __init__(self, writer: Any, prefix: str = "fggp") -> None:
        if isinstance(writer, str):
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            writer = SummaryWriter(writer)
        if not callable(getattr(writer, "add_scalar", None)):
            raise ConfigError("writer", writer, "must be a log directory or have add_scalar(tag, value, step)")
        self.writer = writer
        self.prefix = prefix

    def __call__(self, report: EventReport) -> None:
        scalars = {
            "sparsity": report.sparsity,
            "target_sparsity": report.target_sparsity,
            "event_seconds": report.seconds,
            **{f"density/{name}": value for name, value in report.density.items()},
        }
        for tag, value in scalars.items():
            if not math.isnan(value):
                self.writer.add_scalar(f"{self.prefix}/{tag}", value, report.step)
