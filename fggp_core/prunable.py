"""What every adapter's ``prunable=`` shares: telling a predicate's form from its signature.

The one convention is a predicate ``(name, tensor) -> bool``; the old one-argument forms
(torch ``params=name -> bool``, Keras ``variable -> bool``) are recognised so an adapter can
adapt them with a deprecation warning or refuse them with a clear error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["predicate_arity"]


def predicate_arity(predicate: Callable[..., Any]) -> int:
    """2 for ``(name, tensor) -> bool``, 1 for a one-argument predicate, 0 for neither.

    A callable without a readable signature (some builtins) counts as 2: calling it will tell.
    """
    try:
        signature = inspect.signature(predicate)
    except (TypeError, ValueError):
        return 2
    for arity in (2, 1):
        try:
            signature.bind(*range(arity))
            return arity
        except TypeError:
            continue
    return 0
