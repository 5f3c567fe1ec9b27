"""fggp.torch.attach(on_event=...) and the TensorBoard helper: one report per event, as data."""

import math

import pytest

torch = pytest.importorskip("torch")

import fggp.torch  # noqa: E402
import fggp_core as F  # noqa: E402


def train(on_event, steps=6):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = fggp.torch.attach(model, optimizer, F.FGGP(), F.PolynomialSchedule(0, 0.5, 0, 4, 2), on_event=on_event)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).square().sum().backward()
        optimizer.step()
    return pruner


def test_on_event_receives_each_event_report():
    seen = []
    pruner = train(seen.append)
    assert [r.step for r in seen] == [2, 4]
    assert seen[-1] is pruner.last_event
    assert seen[-1].target_sparsity == 0.5 and seen[-1].sparsity == pruner.sparsity() == 0.5
    assert seen[-1].density == {n: r["density"] for n, r in pruner.layer_report().items()}
    assert all(r.seconds > 0 for r in seen)


def test_a_failing_on_event_warns_and_the_event_still_applies():
    def broken(report):
        raise ValueError("logger down")

    with pytest.warns(RuntimeWarning, match="logger down"):
        pruner = train(broken)
    assert pruner.sparsity() == 0.5
    assert all(torch.all(p[~pruner.masks[n]] == 0) for n, p in pruner.params.items())


def test_on_event_must_be_callable():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(F.ConfigError, match="on_event"):
        fggp.torch.attach(model, torch.optim.SGD(model.parameters(), lr=0.1), F.Magnitude(),
                          F.PolynomialSchedule(0, 0.5, 0, 4, 2), on_event="tensorboard")


def test_tensorboard_writes_sparsity_target_time_and_densities_at_the_event_step():
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer = Writer()
    train(fggp.torch.TensorBoard(writer))
    at_4 = {tag: value for tag, value, step in writer.scalars if step == 4}
    assert at_4["fggp/sparsity"] == 0.5 and at_4["fggp/target_sparsity"] == 0.5
    assert {"fggp/density/0.weight", "fggp/density/2.weight", "fggp/event_seconds"} <= set(at_4)
    assert not any(math.isnan(v) for v in at_4.values())
