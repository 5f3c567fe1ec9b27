"""Which parameters are prunable, in canonical order, and the checks that make attach safe.

Canonical order is ``model.named_parameters()`` order (SPEC). The default prunable set is the
``weight`` of every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` that requires grad: never biases or
normalisation parameters, never frozen layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from fggp_core.errors import ConfigError
from fggp_core.executor import FLOAT_DTYPES

__all__ = ["PRUNABLE_LAYERS", "ParamsSpec", "prunable_parameters", "check_optimizer"]

PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

ParamsSpec = Iterable[str] | Callable[[str], bool] | None
"""None (the default set), a list of parameter names, or a filter ``name -> bool``."""


def _default_ids(model: nn.Module) -> set[int]:
    return {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, PRUNABLE_LAYERS)
        and isinstance(module.weight, nn.Parameter)
        and module.weight.requires_grad
    }


def prunable_parameters(model: nn.Module, params: ParamsSpec = None) -> dict[str, nn.Parameter]:
    """Name -> parameter for everything under pruning, in ``named_parameters()`` order.

    ``params``: None for the default set; a list of names as in ``model.named_parameters()``;
    or a callable ``name -> bool`` applied to every parameter name. Raises ``ConfigError``
    for unknown names, frozen or non-floating parameters, and an empty selection.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", type(model).__name__, "must be a torch.nn.Module")
    named = dict(model.named_parameters())
    if params is None:
        ids = _default_ids(model)
        chosen = [n for n, p in named.items() if id(p) in ids]
    elif callable(params):
        chosen = [n for n in named if params(n)]
    elif isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise ConfigError("params", params, "must be None, a list of parameter names or a callable name -> bool")
    else:
        wanted = list(params)
        for name in wanted:
            if name not in named:
                known = ", ".join(list(named)[:8]) + (", ..." if len(named) > 8 else "")
                raise ConfigError("params", name, f"must name a parameter of model.named_parameters(): {known}")
        if len(set(wanted)) != len(wanted):
            raise ConfigError("params", wanted, "must not list a parameter twice")
        chosen = [n for n in named if n in set(wanted)]
    if not chosen:
        raise ConfigError("params", params, "selects no parameter: nothing would be prunable")
    for name in chosen:
        p = named[name]
        dtype = str(p.dtype).removeprefix("torch.")
        if dtype not in FLOAT_DTYPES:
            raise ConfigError(f"params[{name!r}]", dtype, f"a prunable parameter must have a dtype in {FLOAT_DTYPES}")
        if not p.requires_grad:
            raise ConfigError(f"params[{name!r}]", "requires_grad=False", "a frozen parameter cannot be pruned")
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
