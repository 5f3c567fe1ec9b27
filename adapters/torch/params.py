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
    # _parameters, not module.weight: reading a parametrized weight runs the parametrization (side effects)
    weights = [m._parameters.get("weight") for m in model.modules() if isinstance(m, PRUNABLE_LAYERS)]
    return {id(w) for w in weights if isinstance(w, nn.Parameter) and w.requires_grad}


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
        _warn_parametrized(model)
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
                _refuse_alias(model, named, name, argument)
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
    _refuse_sparse_grads(model, {n: named[n] for n in chosen}, argument)
    return {n: named[n] for n in chosen}


def _refuse_alias(model: nn.Module, named: dict[str, nn.Parameter], name: str, argument: str) -> None:
    """A tied alias (``decoder.weight`` sharing ``encoder.weight``'s Parameter) is named by its first name."""
    for alias, p in model.named_parameters(remove_duplicate=False):
        if alias == name:
            first = next(n for n, q in named.items() if q is p)
            raise ConfigError(
                argument, name,
                f"is tied to {first!r} (the same Parameter; named_parameters() lists it once): name it {first!r}",
            )


def _warn_parametrized(model: nn.Module) -> None:
    """Layers of a default type whose ``weight`` is computed (``torch.nn.utils.parametrize``: ``weight_norm``,
    ``spectral_norm``, custom parametrizations; old-style hooks) are left out of the default set, out loud.

    A mask on the parametrization's original is not a mask on the weight in general (a custom
    parametrization may move zeros; ``weight_norm`` divides by a row norm that a fully pruned row
    makes 0, giving NaN), so fggp does not guess: the user names the original to prune it."""
    # "weight" missing from _parameters: reading module.weight would run the parametrization (spectral_norm's
    # power iteration updates its buffers), so only the registry is looked at.
    left_out = {
        name: [n for n, _ in module.named_parameters(prefix=name) if ".weight" in n or n.endswith("weight_v")]
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_LAYERS) and "weight" not in module._parameters
    }
    if left_out:
        warnings.warn(
            f"fggp: the default prunable set leaves out the layers {list(left_out)}: their weight is computed by a "
            "parametrization (weight_norm, spectral_norm, torch.nn.utils.parametrize), not a parameter. To prune "
            f"one, list its original in prunable= (their parameters: {left_out}), only where zeros of the original "
            "are zeros of the weight; pass prunable= explicitly to silence this warning",
            UserWarning, stacklevel=4,
        )


def _refuse_sparse_grads(model: nn.Module, chosen: dict[str, nn.Parameter], argument: str) -> None:
    """Sparse gradients (``nn.Embedding(sparse=True)``) cannot be masked in place: refused before anything changes."""
    ids = {id(p): n for n, p in chosen.items()}
    for module in model.modules():
        weight = module._parameters.get("weight")  # not module.weight: no parametrization is run
        if getattr(module, "sparse", False) is True and id(weight) in ids:
            name = ids[id(weight)]
            raise ConfigError(
                f"{argument}[{name!r}]", f"{type(module).__name__}(sparse=True)",
                "a parameter with sparse gradients cannot be pruned; use sparse=False or leave it out of prunable=",
            )
    for name, p in chosen.items():
        if p.grad is not None and p.grad.layout != torch.strided:
            allowed = "only parameters with dense (strided) gradients can be pruned"
            raise ConfigError(f"{argument}[{name!r}]", f"grad layout {p.grad.layout}", allowed)


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
