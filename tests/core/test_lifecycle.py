"""The one lifecycle adapters drive: advance, sync_step, the event table, old checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

import fggp_core as F

SHAPES = {"a": (6, 5), "b": (40,), "c": (3, 3, 2)}


def make(scope: str = "global", method: F.Method | None = None) -> F.Pruner:
    schedule = F.PolynomialSchedule(0.0, 0.8, begin_step=1, end_step=9, frequency=3)
    distribution = "erk" if scope == "layerwise" else "uniform"
    pruner = F.Pruner(method or F.FGGP(0.5), schedule, scope=scope, distribution=distribution)
    pruner.init_masks({n: np.zeros(s, np.float32) for n, s in SHAPES.items()})
    return pruner


def test_advance_counts_steps_and_says_which_are_events():
    pruner = make()
    events = [t for t in range(1, 12) if pruner.advance()]
    assert events == [1, 4, 7, 9] == pruner.schedule.events()
    assert pruner.step == 11


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_the_event_table_holds_the_targets_the_eager_pruner_reaches(scope):
    """A jitted adapter's table and the eager lifecycle agree, event by event, group by group."""
    pruner = make(scope, F.TwoStage("magnitude", "gradient", extra_fraction=F.CosineRate(0.5, 0.005, 9)))
    table = pruner.event_table()
    assert table.steps.tolist() == [1, 4, 7, 9]
    rng = np.random.default_rng(0)
    row = 0
    while pruner.step < 9:
        weights = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
        grads = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
        if pruner.on_step(weights, grads) is not None:
            pruned = [int((~pruner.masks[n]).sum()) for n in SHAPES]
            assert (table.targets[row].tolist() == [sum(pruned)]) if scope == "global" else (
                table.targets[row].tolist() == pruned
            )
            assert table.rates[row] == pruner.method.rate_at(pruner.step)
            row += 1
    assert row == 4


def test_sync_step_follows_an_optimizer_counter_and_refuses_nonsense():
    pruner = make()
    pruner.sync_step(6)
    assert pruner.step == 6 and pruner.advance()  # step 7 is an event
    for bad in (-1, 2.5, True):
        with pytest.raises(F.ConfigError, match="step"):
            pruner.sync_step(bad)
    assert pruner.step == 7


def test_init_masks_from_zeros_counts_zeros_as_pruned():
    pruner = F.Pruner(F.Magnitude(), F.OneShotSchedule(0.5, 1))
    w = {"a": np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)}
    pruner.init_masks(w, from_zeros=True)
    assert pruner.masks["a"].tolist() == [[False, True], [True, False]]


def test_a_state_dict_of_release_0_1_0_loads_and_continues():
    """The state format is unchanged (version 1): a 0.1.0 checkpoint, written out literally here."""
    old = {
        "version": 1,
        "step": 4,
        "masks": {n: np.ones(s, bool) for n, s in SHAPES.items()},
        "config": {
            "method": {"name": "fggp", "rate": 0.5},
            "schedule": {"name": "polynomial", "initial_sparsity": 0.0, "final_sparsity": 0.8, "begin_step": 1,
                         "end_step": 9, "frequency": 3, "power": 3},
            "scope": "global", "distribution": "uniform", "skip_nonfinite": False, "exclude": [],
            "sparse_start": None,
        },
    }
    old["masks"]["b"][:10] = False
    pruner = F.Pruner.from_state_dict(old)
    assert pruner.step == 4 and pruner.pruned_counts()["b"] == 10
    assert pruner.advance() is False and pruner.advance() is False and pruner.advance() is True  # step 7
    with pytest.raises(F.ConfigError, match="version"):
        F.Pruner.from_state_dict({**old, "version": 99})
