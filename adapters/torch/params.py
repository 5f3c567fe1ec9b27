"""Which parameters are prunable, in canonical order, and the checks that make attach safe.

Canonical order is ``model.named_parameters()`` order (SPEC). The default prunable set is the
``weight`` of every ``nn.Linear``, ``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d`` that
requires grad: never embeddings, biases or normalisation parameters, never frozen layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from fggp_core.backend import FLOAT_DTYPES
from fggp_core.errors import ConfigError
from fggp_core.prunable import predicate_arity

__all__ = ["PRUNABLE_LAYERS", "PrunableSpec", "UNSET", "prunable_parameters", "prunable_from_alias", "check_optimizer"]

PRUNABLE_LAYERS = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)
"""Layer types whose ``weight`` is prunable by default (``nn.Embedding`` is not among them)."""

PrunableSpec = Iterable[str] | Callable[[str, nn.Parameter], bool] | None
"""None (the default set), a list of parameter names, or a predicate ``(name, parameter) -> bool``."""

UNSET: object = object()  # ``params=`` not given (None is an old, valid spelling of the default set)
_ALLOWED = "must be None, a list of parameter names or a predicate (name, parameter) -> bool"


def prunable_from_alias(prunable: PrunableSpec, params: object) -> tuple[PrunableSpec, str]:
    """The prunable spec and the argument name errors should use, accepting the deprecated ``params=``.

    ``params`` was a list of names or a predicate ``name -> bool``; it still works, with a
    ``DeprecationWarning``. Giving both ``prunable=`` and ``params=`` is a ``ConfigError``.
    """
    if params is UNSET:
        return prunable, "prunable"
    if prunable is not None:
        raise ConfigError("params", params, "is the deprecated name of prunable=; pass prunable= only")
    warnings.warn(
        "fggp.torch.attach(params=...) is deprecated: use prunable= (a list of names, or a predicate "
        "(name, parameter) -> bool)", DeprecationWarning, stacklevel=3,
    )
    if callable(params):
        by_name = params
        return (lambda name, parameter: by_name(name)), "params"
    return params, "params"  # type: ignore[return-value]


def _default_ids(model: nn.Module) -> set[int]:
    return {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, PRUNABLE_LAYERS)
        and isinstance(module.weight, nn.Parameter)
        and module.weight.requires_grad
    }


def prunable_parameters(
    model: nn.Module, prunable: PrunableSpec = None, *, argument: str = "prunable"
) -> dict[str, nn.Parameter]:
    """Name -> parameter for everything under pruning, in ``named_parameters()`` order.

    ``prunable``: None for the default set (``PRUNABLE_LAYERS`` weights that require grad); a
    list of names as in ``model.named_parameters()``; or a predicate ``(name, parameter) -> bool``
    applied to every named parameter. Raises ``ConfigError`` (naming ``argument``) for unknown
    or repeated names, frozen or non-floating parameters, and an empty selection.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", type(model).__name__, "must be a torch.nn.Module")
    named = dict(model.named_parameters())
    if prunable is None:
        ids = _default_ids(model)
        chosen = [n for n, p in named.items() if id(p) in ids]
    elif callable(prunable):
        if predicate_arity(prunable) != 2:
            allowed = "a predicate takes two arguments (name, parameter) and returns a bool"
            raise ConfigError(argument, prunable, allowed)
        chosen = [n for n, p in named.items() if prunable(n, p)]
    elif isinstance(prunable, (str, bytes)) or not isinstance(prunable, Iterable):
        raise ConfigError(argument, prunable, _ALLOWED)
    else:
        wanted = list(prunable)
        for name in wanted:
            if name not in named:
                known = ", ".join(list(named)[:8]) + (", ..." if len(named) > 8 else "")
                raise ConfigError(argument, name, f"must name a parameter of model.named_parameters(): {known}")
        if len(set(wanted)) != len(wanted):
            raise ConfigError(argument, wanted, "must not list a parameter twice")
        chosen = [n for n in named if n in set(wanted)]
    if not chosen:
        raise ConfigError(argument, prunable, "selects no parameter: nothing would be prunable")
    for name in chosen:
        p = named[name]
        dtype = str(p.dtype).removeprefix("torch.")
        if dtype not in FLOAT_DTYPES:
            allowed = f"a prunable parameter must have a dtype in {FLOAT_DTYPES}"
            raise ConfigError(f"{argument}[{name!r}]", dtype, allowed)
        if not p.requires_grad:
            raise ConfigError(f"{argument}[{name!r}]", "requires_grad=False", "a frozen parameter cannot be pruned")
    return {n: named[n] for n in chosen}


def check_optimizer(optimizer: object, params: dict[str, nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer must be a ``torch.optim.Optimizer`` holding every prunable parameter."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError("optimizer", type(optimizer).__name__, "must be a torch.optim.Optimizer")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [n for n, p in params.items() if id(p) not in held]
    if missing:
        raise ConfigError(
            "optimizer", type(optimizer).__name__, f"must hold every prunable parameter; it does not hold {missing}"
        )
    return optimizer
