"""``prunable=``: None (the default set), a list of names, or a predicate ``(name, parameter) -> bool``;
the masks follow ``named_parameters()`` order. ``params=`` is the deprecated old name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fggp_core as F
from fggp.torch import PRUNABLE_LAYERS, attach
from tests.torch.training import tiny_mlp

SCHEDULE = F.OneShotSchedule(0.5, step=1)


def every_layer_kind() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({
        "embed": nn.Embedding(10, 4),
        "lin": nn.Linear(4, 4),
        "c1": nn.Conv1d(2, 2, 3), "c2": nn.Conv2d(2, 2, 3), "c3": nn.Conv3d(2, 2, 3),
        "t1": nn.ConvTranspose1d(2, 2, 3), "t2": nn.ConvTranspose2d(2, 2, 3), "t3": nn.ConvTranspose3d(2, 2, 3),
        "norm": nn.LayerNorm(4),
        "frozen": nn.Linear(4, 4).requires_grad_(False),
    })


def attached(model: nn.Module, **kwargs):
    return attach(model, torch.optim.SGD(model.parameters(), lr=0.1), F.Magnitude(), SCHEDULE, **kwargs)


def test_default_set_is_linear_conv_and_conv_transpose_weights_never_embeddings_biases_norms_or_frozen():
    pruner = attached(every_layer_kind())
    assert list(pruner.masks) == ["lin.weight", "c1.weight", "c2.weight", "c3.weight",
                                  "t1.weight", "t2.weight", "t3.weight"]
    assert nn.Embedding not in PRUNABLE_LAYERS and nn.ConvTranspose2d in PRUNABLE_LAYERS


def test_a_list_of_names_in_any_order_gives_named_parameters_order_and_may_name_an_embedding():
    pruner = attached(every_layer_kind(), prunable=["t2.weight", "embed.weight", "lin.bias"])
    assert list(pruner.masks) == ["embed.weight", "lin.bias", "t2.weight"]


def test_a_predicate_sees_each_name_and_parameter():
    seen = []

    def matrices_outside_lin(name: str, parameter: nn.Parameter) -> bool:
        seen.append((name, parameter))
        return parameter.ndim >= 2 and parameter.requires_grad and not name.startswith("lin.")

    model = every_layer_kind()
    pruner = attached(model, prunable=matrices_outside_lin)
    assert seen == list(model.named_parameters())
    assert list(pruner.masks) == ["embed.weight", "c1.weight", "c2.weight", "c3.weight",
                                  "t1.weight", "t2.weight", "t3.weight"]


@pytest.mark.parametrize("old, expected", [
    (["2.weight", "0.bias"], ["0.bias", "2.weight"]),
    (lambda name: name.startswith("0."), ["0.weight", "0.bias"]),  # the old predicate takes the name only
    (None, ["0.weight", "2.weight"]),
])
def test_params_is_a_deprecated_alias_that_keeps_working(old, expected):
    with pytest.warns(DeprecationWarning, match="prunable="):
        pruner = attached(tiny_mlp(), params=old)
    assert list(pruner.masks) == expected


def test_params_and_prunable_together_is_a_config_error():
    with pytest.raises(F.ConfigError, match="deprecated name of prunable") as error:
        attached(tiny_mlp(), prunable=["0.weight"], params=["0.weight"])
    assert error.value.argument == "params"


def test_errors_name_the_argument_that_was_given():
    with pytest.raises(F.ConfigError) as error, pytest.warns(DeprecationWarning):
        attached(tiny_mlp(), params=["no.such"])
    assert error.value.argument == "params"
    with pytest.raises(F.ConfigError) as error:
        attached(tiny_mlp(), prunable=["no.such"])
    assert error.value.argument == "prunable"
