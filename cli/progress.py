"""Progress output on stderr: tqdm bars on a terminal, one clean line per run otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .config import RunSpec

__all__ = ["Progress", "describe"]


def describe(spec: RunSpec) -> str:
    start = "dense start" if spec.init_sparsity == 0 else f"{100 * spec.init_sparsity:g}% ERK start"
    target = "" if spec.method == "dense" else f" {100 * spec.sparsity:g}%"
    return f"{spec.method}{target}, {start}, seed {spec.seed}"


class Progress:
    """Reports a grid of ``total`` runs. ``interactive=None`` means: bars when ``stream`` is a TTY."""

    def __init__(self, total: int, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.total = total
        self.index = 0
        self.runs: Any = None
        self.epochs: Any = None
        if self.interactive:
            from tqdm import tqdm

            self.runs = tqdm(total=total, desc="runs", unit="run", file=self.stream, position=0)

    def start(self, spec: RunSpec, epochs: int) -> None:
        """A run begins here (sequential mode): show its epoch bar."""
        if self.interactive:
            from tqdm import tqdm

            self.runs.set_postfix_str(describe(spec))
            self.epochs = tqdm(total=epochs, desc="epochs", unit="ep", file=self.stream, position=1, leave=False)

    def epoch(self, epoch: int, epochs: int, loss: float) -> None:
        if self.epochs is not None:
            self.epochs.set_postfix_str(f"loss {loss:.3f}")
            self.epochs.update(1)

    def finish(self, spec: RunSpec, record: dict[str, Any] | None) -> None:
        """Count the run, close its bar, print its line; ``record=None`` marks a run skipped by --resume."""
        self.index += 1
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None
        if record is None:
            line = f"run {self.index}/{self.total} {describe(spec)}: already in the results, skipped"
        else:
            line = (
                f"run {self.index}/{self.total} {describe(spec)}: accuracy {100 * record['accuracy']:.2f}%, "
                f"sparsity reached {100 * record['sparsity']:.3f}%, {record['time_s']:.1f} s"
            )
        if self.interactive:
            self.runs.update(1)
            self.runs.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def skip(self, spec: RunSpec) -> None:
        self.finish(spec, None)

    def close(self) -> None:
        if self.runs is not None:
            self.runs.close()
