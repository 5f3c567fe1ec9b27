"""Exceptions raised by fggp. Every message names the argument, its value and what is allowed."""

from __future__ import annotations

__all__ = [
    "FGGPError",
    "ConfigError",
    "InputMismatchError",
    "NonFiniteScoreError",
    "UnreachableTargetError",
]


class FGGPError(Exception):
    """Base class of every error fggp raises on purpose."""


class ConfigError(FGGPError, ValueError):
    """An argument has a value outside what is allowed.

    ``argument`` and ``value`` are kept as attributes so callers can react programmatically.
    """

    def __init__(self, argument: str, value: object, allowed: str) -> None:
        self.argument = argument
        self.value = value
        self.allowed = allowed
        super().__init__(f"{argument}={value!r} is invalid: {allowed}")


class InputMismatchError(FGGPError, ValueError):
    """Weights, gradients and masks do not describe the same tensors (names, shapes, dtypes)."""


class NonFiniteScoreError(FGGPError, ArithmeticError):
    """A NaN or an infinity is among the scores of active entries of ``tensor`` at an event."""

    def __init__(self, tensor: str, count: int, score: str) -> None:
        self.tensor = tensor
        self.count = count
        self.score = score
        super().__init__(
            f"{count} active entries of tensor {tensor!r} have a NaN or infinite {score} score; "
            "pruning needs finite scores (pass skip_nonfinite=True to skip such events)"
        )


class UnreachableTargetError(FGGPError, ValueError):
    """The requested number of entries to prune cannot be pruned (too few candidates)."""
