"""fggp.keras: pruning for Keras 3 (tensorflow, jax and torch backends). Placeholder docstring."""

from .executor import KERAS, KerasExecutor, select

__all__ = ["KERAS", "KerasExecutor", "select"]
