"""fggp.torch.flops: multiply-accumulates per sample, a pruned weight costing none."""

import pytest
import torch
from torch import nn

import fggp.torch
from fggp_core import FGGP, ConfigError, OneShotSchedule


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # 8x8 out: 64 positions, 108 weights
        self.depthwise = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)  # 4x4 out: 16 positions, 36 weights
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)  # 4x4 in: 16 positions, 32 weights
        self.fc = nn.Linear(2 * 8 * 8, 5)  # 1 row, 640 weights
        self.shared = nn.Linear(5, 5)  # called twice: 2 rows, 25 weights

    def forward(self, x):
        x = self.up(self.depthwise(self.conv(x)))
        return self.shared(self.shared(self.fc(x.flatten(1))))


def test_dense_counts_match_the_layer_arithmetic():
    report = fggp.torch.flops(Net(), (3, 8, 8))
    expected = {
        "conv.weight": ("conv", 64, 108), "depthwise.weight": ("conv", 16, 36),
        "up.weight": ("conv_transpose", 16, 32), "fc.weight": ("linear", 1, 640), "shared.weight": ("linear", 2, 25),
    }  # fmt: skip
    assert {n: (r.kind, r.positions, r.size) for n, r in report.layers.items()} == expected
    assert report.dense_macs == 64 * 108 + 16 * 36 + 16 * 32 + 640 + 2 * 25 == report.macs
    assert report.fraction == 1.0


def test_pruned_entries_cost_no_mac_and_the_pruner_counts_regrown_zeros_as_kept():
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        model.conv.weight[0].zero_()  # 27 zeros
    report = fggp.torch.flops(model, (3, 8, 8))
    assert report.layers["conv.weight"].kept == 108 - 27
    assert report.dense_macs - report.macs == 64 * 27

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    pruner = fggp.torch.attach(model, optimizer, FGGP(0.5), OneShotSchedule(0.5, step=1))
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    by_pruner = fggp.torch.flops(model, (3, 8, 8), pruner=pruner)
    layer_report = pruner.layer_report()
    for name, layer in by_pruner.layers.items():
        assert layer.kept == layer.size - layer_report[name]["pruned"]
    assert by_pruner.macs < by_pruner.dense_macs


def test_example_input_divides_by_its_batch_and_keeps_training_mode():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    tokens = torch.zeros(6, 7, dtype=torch.long)  # batch 6, 7 tokens: the Linear runs once per token
    report = fggp.torch.flops(model, example=tokens)
    assert report.layers["1.weight"].positions == 7
    assert model.training


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"input_shape": (3, 0)},
        {"input_shape": "3x8"},
        {"input_shape": (3, 8, 8), "example": torch.zeros(1, 3, 8, 8)},
    ],
)
def test_bad_input_shape_names_the_argument(kwargs):
    with pytest.raises(ConfigError, match="input_shape"):
        fggp.torch.flops(Net(), **kwargs)
