"""Every backend's select equals fggp_core.select, bit for bit, on every device it has.

The reference is the core run on the values the backend actually holds (a backend may store
float64 as float32, e.g. JAX without x64). Where the core raises, the backend raises the same
error class. Keras runs here with the process's KERAS_BACKEND; tests/run.sh repeats the keras
parameters once per Keras backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import fggp_core as F
from tests.harness import assert_same_masks, backend_params, held_values, on_backend
from tests.strategies import DTYPES, cases

PARAMS = backend_params()


def reference(case, weights, grads, masks):
    try:
        return F.select(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        return type(error)


@pytest.mark.parametrize("backend", PARAMS)
@given(data=cases(dtypes=DTYPES))
def test_backend_select_equals_core_select(backend, data):
    module, device = backend
    case = data
    if any(a.dtype.name not in module.DTYPES for a in case.weights.values()):
        case.weights = {n: a.astype(np.float32) for n, a in case.weights.items()}
        if case.grads is not None:
            case.grads = {n: a.astype(np.float32) for n, a in case.grads.items()}
    weights, grads = on_backend(module, device, case.weights), on_backend(module, device, case.grads)
    masks = on_backend(module, device, case.masks)
    expected = reference(case, held_values(module, weights), held_values(module, grads), held_values(module, masks))
    try:
        got = module.select(case.method, weights, grads, masks, case.k, scope=case.scope, step=case.step)
    except F.FGGPError as error:
        assert type(error) is expected, f"backend raised {type(error).__name__}, core gave {expected}"
        return
    assert not isinstance(expected, type), f"core raised {expected.__name__}, backend did not"
    assert_same_masks(got, expected, module.to_numpy)


@pytest.mark.parametrize("backend", PARAMS)
def test_backend_select_on_large_tied_global_problem(backend):
    """A 200k-entry global problem with heavy ties: the boundary tie-break must match exactly."""
    module, device = backend
    rng = np.random.default_rng(0)
    shapes = {"a": (300, 400), "b": (50, 1000), "c": (30000,)}
    weights = {n: (rng.integers(-20, 20, size=s) / 8).astype(np.float32) for n, s in shapes.items()}
    grads = {n: (rng.integers(-5, 5, size=s) / 4).astype(np.float32) for n, s in shapes.items()}
    masks = {n: rng.random(s) < 0.8 for n, s in shapes.items()}
    k = int(sum(m.sum() for m in masks.values()) // 3)
    for method in (F.FGGP(0.5), F.Magnitude(), F.Taylor(), F.GlobalMP(100)):
        expected = F.select(method, weights, grads, masks, k)
        got = module.select(
            method, on_backend(module, device, weights), on_backend(module, device, grads),
            on_backend(module, device, masks), k,
        )
        assert_same_masks(got, expected, module.to_numpy)
