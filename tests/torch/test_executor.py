"""TorchExecutor's own properties: the blockwise first_true scan across block boundaries, exact
kth_value, on-device selection (no host copies), and the harness backend's exact conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fggp_core as F
from fggp.torch import TORCH, TorchExecutor
from tests.harness import assert_same_masks
from tests.strategies import BFLOAT16, cases
from tests.torch import backend

TINY_BLOCKS = TorchExecutor(block=3)  # every selection crosses many blocks


@given(st.lists(st.booleans(), max_size=40), st.integers(0, 45), st.sampled_from([1, 2, 3, 7, 64]))
def test_first_true_keeps_exactly_the_first_r_true_entries(flags, r, block):
    mask = np.array(flags, dtype=bool)
    expected = F.NUMPY.first_true(mask.copy(), r)
    got = TorchExecutor(block=block).first_true(torch.from_numpy(mask.copy()), r)
    np.testing.assert_array_equal(got.numpy(), expected)


SCORES = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, np.inf, 5e-324, 1e-45]), st.floats(0, 1e300))


@given(st.lists(SCORES, min_size=1, max_size=40), st.sampled_from(["float32", "float64"]), st.data())
def test_kth_value_is_exactly_the_kth_smallest(values, dtype, data):
    x = np.array(values, dtype=dtype)  # float32 rounds huge values to inf and tiny ones to 0 or subnormals
    k = data.draw(st.integers(0, x.size))
    expected = F.NUMPY.kth_value(x.copy(), k)
    got = TORCH.kth_value(torch.from_numpy(x), k)
    assert float(got) == float(expected) and (k == 0 or got.dtype == torch.from_numpy(x).dtype)


@given(cases())
def test_select_with_tiny_blocks_equals_core_select(case):
    def run(ex, convert):
        arrays = [None if a is None else {n: convert(v) for n, v in a.items()}
                  for a in (case.weights, case.grads, case.masks)]
        try:
            return F.select(case.method, *arrays, case.k, scope=case.scope, step=case.step, executor=ex)
        except F.FGGPError as error:
            return type(error)

    expected = run(F.NUMPY, lambda a: a)
    got = run(TINY_BLOCKS, lambda a: backend.to_backend(a, "cpu"))
    if isinstance(expected, type):
        assert got is expected
    else:
        assert_same_masks(got, expected, backend.to_numpy)


def test_selection_never_copies_a_tensor_to_the_host(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a full tensor was copied to the host")

    monkeypatch.setattr(TorchExecutor, "to_host", refuse)
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(40, 30, generator=g), "b": torch.randn(500, generator=g).to(torch.bfloat16)}
    grads = {n: torch.randn(w.shape, generator=g).to(w.dtype) for n, w in weights.items()}
    masks = {n: torch.rand(w.shape, generator=g) < 0.7 for n, w in weights.items()}
    for method in (F.FGGP(), F.Magnitude(), F.Taylor(), F.Random(1), F.GlobalMP(5)):
        for scope, k in (("global", 600), ("layerwise", {"a": 300, "b": 100})):
            if isinstance(method, F.GlobalMP) and scope == "layerwise":
                continue
            new = F.select(method, weights, grads, masks, k, scope=scope, step=3, executor=TORCH)
            assert all(m.dtype == torch.bool for m in new.values())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bool"] + (["bfloat16"] if BFLOAT16 else []))
def test_backend_conversions_are_exact(dtype):
    values = np.array([0.0, -0.0, 1.5, -2.25, 65504.0, 1e-3, np.inf, np.nan])
    array = (values != 0) if dtype == "bool" else values.astype(BFLOAT16 if dtype == "bfloat16" else dtype)
    tensor = backend.to_backend(array, "cpu")
    assert str(tensor.dtype) == f"torch.{dtype}"
    back = backend.to_numpy(tensor)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back.view(np.uint8), array.view(np.uint8))  # same bits, -0.0 and NaN included
    assert backend.devices()[0] == "cpu" and ("cuda" in backend.devices()) == torch.cuda.is_available()
