"""A state dict that fails any check changes nothing: validate everything, then apply (issue 14, item 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fggp_core as F


def pruner_with_state():
    shapes = {"a": (6, 5), "b": (4, 3)}
    rng = np.random.default_rng(0)
    weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    pruner = F.Pruner(F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    pruner.init_masks(weights)
    pruner.on_step(weights)  # step 1: the event prunes 21 of 42
    saved = pruner.state_dict()
    other = F.Pruner(F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    other.init_masks(weights)
    return other, saved


def corrupt(state, **changes):
    state = {**state, "masks": dict(state["masks"])}
    for key, value in changes.items():
        if value is KeyError:
            state.pop(key)
        else:
            state[key] = value
    return state


BAD = {
    "step missing": lambda s: corrupt(s, step=KeyError),
    "step None": lambda s: corrupt(s, step=None),
    "step NaN": lambda s: corrupt(s, step=math.nan),
    "step -5": lambda s: corrupt(s, step=-5),
    "step '7'": lambda s: corrupt(s, step="7"),
    "step 2.5": lambda s: corrupt(s, step=2.5),
    "step True": lambda s: corrupt(s, step=True),
    "masks missing": lambda s: corrupt(s, masks=KeyError),
    "masks a list": lambda s: corrupt(s, masks=[1, 2]),
    "mask shape": lambda s: corrupt(s, masks={**s["masks"], "a": np.ones((5, 6), bool)}),
    "mask dtype": lambda s: corrupt(s, masks={**s["masks"], "a": np.ones((6, 5), np.int64)}),
    "mask ragged": lambda s: corrupt(s, masks={**s["masks"], "a": [[True], [True, False]]}),
    "mask name": lambda s: corrupt(s, masks={"a": s["masks"]["a"], "c": s["masks"]["b"]}),
    "mask extra": lambda s: corrupt(s, masks={**s["masks"], "c": s["masks"]["b"]}),
    "version": lambda s: corrupt(s, version=99),
    "config missing": lambda s: corrupt(s, config=KeyError),
    "config other": lambda s: corrupt(s, config={**s["config"], "scope": "layerwise"}),
    "not a dict": lambda s: [s],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_refused_state_changes_nothing(case):
    pruner, saved = pruner_with_state()
    masks, step = {n: m.copy() for n, m in pruner.masks.items()}, pruner.step
    with pytest.raises((F.ConfigError, F.InputMismatchError)) as error:
        pruner.load_state_dict(BAD[case](saved))
    assert "state" in str(error.value)  # names what was wrong in the state
    assert pruner.step == step and all(np.array_equal(pruner.masks[n], m) for n, m in masks.items())
    assert pruner.sparsity() == 0.0


@pytest.mark.parametrize("step", [0, 7, np.int64(3)])
def test_a_good_state_still_loads(step):
    pruner, saved = pruner_with_state()
    pruner.load_state_dict({**saved, "step": step, "masks": {n: m.tolist() for n, m in saved["masks"].items()}})
    assert pruner.step == int(step) and pruner.sparsity() == 0.5


def test_a_step_error_names_argument_value_and_what_is_allowed():
    pruner, saved = pruner_with_state()
    with pytest.raises(F.ConfigError) as error:
        pruner.load_state_dict({**saved, "step": "7"})
    assert error.value.argument == "state['step']" and error.value.value == "7"
    assert "integer >= 0" in str(error.value)
