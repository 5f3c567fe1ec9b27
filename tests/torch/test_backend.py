"""TorchBackend's primitives mean what NumpyBackend's mean: same keys bit for bit, same histograms,
picks, counts and first-True cuts (across block boundaries), exact k-th keys; counts are 0-d
int64 tensors on the data's device; no primitive copies data to the host or reads a value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fggp_core as F
from fggp.torch import TORCH, TorchBackend
from fggp_core.backend import INF_KEY
from fggp_core.selection import host_random, kth_key, prune_group, run_groups
from tests.harness import assert_same_masks
from tests.strategies import BFLOAT16, cases, numpy_dtype
from tests.torch import backend

NP = F.NUMPY
BLOCKS = st.sampled_from([1, 2, 3, 7, 64, 1 << 20])  # tiny blocks: every scan crosses many of them
SPECIAL = [0.0, -0.0, 0.5, -0.5, 1.0, 2.0, np.inf, -np.inf, np.nan, 5e-324, 1e-45, 6e-8, 65504.0]
VALUES = st.one_of(st.sampled_from(SPECIAL), st.floats(-1e300, 1e300))
DTYPES = ["float16", "float32", "float64"] + (["bfloat16"] if BFLOAT16 is not None else [])


def count(x) -> torch.Tensor:
    """A count as the algorithm passes it: a 0-d int64 tensor."""
    return torch.tensor(x, dtype=torch.int64)


def host_keys(values, score: str) -> np.ndarray:
    """NumPy's keys of ``values`` in ``score`` dtype (huge values round to inf in float32)."""
    with np.errstate(over="ignore"):
        return NP.keys(np.array(values).astype(score), None, score)


def assert_count(got: torch.Tensor, expected) -> None:
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64 and got.shape == (), got
    assert int(got) == int(expected)


@given(st.lists(st.booleans(), max_size=40), st.integers(-3, 45), BLOCKS)
def test_first_true_keeps_exactly_the_first_r_true_entries(flags, r, block):
    mask = np.array(flags, dtype=bool)
    expected = NP.first_true(mask.copy(), r)
    got = TorchBackend(block=block).first_true(torch.from_numpy(mask.copy()), count(r))
    np.testing.assert_array_equal(got.numpy(), expected)


@given(st.lists(VALUES, max_size=30), st.sampled_from(DTYPES), st.booleans(), st.sampled_from(["float32", "float64"]),
       st.data())
def test_keys_are_numpys_bit_for_bit(values, dtype, taylor, score, data):
    other = data.draw(st.lists(VALUES, min_size=len(values), max_size=len(values))) if taylor else None
    if dtype == "float64":
        score = "float64"  # score_dtype: a float64 tensor is scored in float64
    with np.errstate(over="ignore", invalid="ignore"):  # huge values become inf, inf * 0 is NaN
        t = np.array(values).astype(numpy_dtype(dtype))
        other = None if other is None else np.array(other).astype(t.dtype)
        expected = NP.keys(t, other, score)
    tt = backend.to_backend(t, "cpu")
    got = TORCH.keys(tt, None if other is None else backend.to_backend(other, "cpu"), score)
    assert got.dtype == (torch.int64 if score == "float64" else torch.int32)
    finite = expected < INF_KEY[score]
    np.testing.assert_array_equal(got.numpy()[finite], expected[finite])
    assert (got.numpy()[~finite] >= INF_KEY[score]).all()  # +inf and NaN (whatever its payload) rank last
    np.testing.assert_array_equal(backend.to_numpy(tt).view(np.uint8), t.view(np.uint8))  # the input is untouched


def test_keys_reuse_a_matching_buffer_and_never_alias_the_weight():
    w = torch.tensor([-1.5, 2.0, -0.0])
    first = TORCH.keys(w, None, "float32")
    again = TORCH.keys(w * 2, w, "float32", out=first)
    assert again.data_ptr() == first.data_ptr()
    assert again.view(torch.float32).tolist() == [4.5, 8.0, 0.0]  # |2w * w|
    assert w.tolist() == [-1.5, 2.0, -0.0]
    wide = TORCH.keys(w.double(), None, "float64", out=first)  # another key dtype: a new buffer
    assert wide.dtype == torch.int64 and wide.data_ptr() != first.data_ptr()


KEYS = st.lists(st.one_of(st.sampled_from(SPECIAL[:6] + [np.inf]), st.floats(0, 1e300)), min_size=1, max_size=40)


@given(KEYS, st.sampled_from(["float32", "float64"]), st.integers(1, 4), BLOCKS, st.data())
def test_kth_key_is_exact_over_several_tensors(values, score, parts, block, data):
    keys = host_keys(values, score)
    k = data.draw(st.integers(0, keys.size))
    cuts = sorted(data.draw(st.lists(st.integers(0, keys.size), min_size=parts - 1, max_size=parts - 1)))
    pieces = np.split(keys, cuts)
    expected = kth_key(NP, pieces, np.int64(k), score)
    got = kth_key(TorchBackend(block=block), [torch.from_numpy(p.copy()) for p in pieces], count(k), score)
    assert_count(got, expected)
    assert k == 0 or int(got) == np.sort(keys)[k - 1]


@given(KEYS, st.sampled_from(["float32", "float64"]), BLOCKS, st.data())
def test_histogram_and_pick_equal_numpys(values, score, block, data):
    keys = host_keys(values, score)
    bits = 63 if score == "float64" else 31
    width = data.draw(st.integers(1, 16))
    shift = data.draw(st.integers(0, bits - width))
    prefix = int(data.draw(st.sampled_from(list(keys)))) if data.draw(st.booleans()) else 0
    prefix = prefix >> (shift + width) << (shift + width)  # the bits above the digit, as kth_key builds them
    expected = NP.histogram(keys, shift, width, np.int64(prefix))
    got = TorchBackend(block=block).histogram(torch.from_numpy(keys), shift, width, count(prefix))
    assert got.dtype == torch.int64 and got.shape == (1 << width,)
    np.testing.assert_array_equal(got.numpy(), expected)
    rank = data.draw(st.integers(0, max(0, int(expected.sum()))))
    digit, within = TORCH.pick(got, count(rank))
    expected_digit, expected_within = NP.pick(expected, np.int64(rank))
    assert_count(digit, expected_digit)
    assert_count(within, expected_within)


@given(st.lists(st.tuples(VALUES, st.booleans()), max_size=30), st.sampled_from(["float32", "float64"]))
def test_exclude_nonfinite_and_count(pairs, score):
    values, flags = np.array([v for v, _ in pairs]), np.array([f for _, f in pairs], dtype=bool)
    keys = host_keys(values, score)
    among = torch.from_numpy(flags)
    assert_count(TORCH.nonfinite(torch.from_numpy(keys.copy()), among), NP.nonfinite(keys.copy(), flags))
    assert_count(TORCH.count(among), NP.count(flags))
    got = TORCH.exclude(torch.from_numpy(keys.copy()), among).numpy()
    np.testing.assert_array_equal(got[flags], keys[flags])
    assert (got[~flags] == INF_KEY[score]).all()


@given(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0, 1 / 3]), st.integers(0, 2**40))
def test_scalars_are_0d_int64_tensors_and_floor_mul_is_the_hosts(rate, n):
    assert_count(TORCH.floor_mul(rate, count(n)), NP.floor_mul(rate, n))
    assert_count(TORCH.scalar(n, torch.ones(1)), n)
    assert_count(TORCH.minimum(count(n), count(7)), min(n, 7))
    assert_count(TORCH.where(count(n) > 5, count(1), count(2)), 1 if n > 5 else 2)
    assert TORCH.as_key(count(-1), torch.zeros(1, dtype=torch.int32)).dtype == torch.int32


@given(cases())
def test_select_with_tiny_blocks_equals_core_select(case):
    def run(be, convert):
        arrays = [None if a is None else {n: convert(v) for n, v in a.items()}
                  for a in (case.weights, case.grads, case.masks)]
        try:
            return F.select(case.method, *arrays, case.k, scope=case.scope, step=case.step, backend=be)
        except F.FGGPError as error:
            return type(error)

    expected = run(NP, lambda a: a)
    got = run(TorchBackend(block=3), lambda a: backend.to_backend(a, "cpu"))
    if isinstance(expected, type):
        assert got is expected
    else:
        assert_same_masks(got, expected, backend.to_numpy)


def test_the_algorithm_never_reads_a_value_or_copies_a_tensor_to_the_host(monkeypatch):
    """prune_group and run_groups on torch tensors: no .item(), int(), bool(), .numpy(), .tolist()."""
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(40, 30, generator=g), torch.randn(500, generator=g).to(torch.bfloat16)]
    grads = [torch.randn(w.shape, generator=g).to(w.dtype) for w in weights]
    masks = [torch.rand(w.shape, generator=g) < 0.7 for w in weights]

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor's value was read on the host")

    for name in ("item", "tolist", "numpy", "__int__", "__index__", "__bool__", "__float__", "__array__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    monkeypatch.setattr(TorchBackend, "to_host", refuse)
    k = TORCH.scalar(600)
    for method in (F.FGGP(), F.Magnitude(), F.Taylor(), F.Random(1), F.GlobalMP(5), F.TwoStage(
            "magnitude", "gradient", extra_fraction=F.CosineRate(0.5, 0.005, 30))):
        flat = [TORCH.flat(m) for m in masks]
        pruned, status = prune_group(TORCH, method.plan(), weights, grads, flat, k, rate=method.rate_at(3), reserve=5,
                                     random=host_random(TORCH, 1, 3))
        assert all(p.dtype == torch.bool and p.shape == f.shape for p, f in zip(pruned, flat))
        assert all(isinstance(s, torch.Tensor) and s.dtype == torch.int64 for s in status)
        new, _ = run_groups(TORCH, method, weights, grads, masks, [([0], k), ([1], TORCH.scalar(100))],
                            rate=method.rate_at(3), step=3)
        assert [m.dtype for m in new] == [torch.bool, torch.bool]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bool"] + (["bfloat16"] if BFLOAT16 else []))
def test_harness_conversions_are_exact(dtype):
    values = np.array([0.0, -0.0, 1.5, -2.25, 65504.0, 1e-3, np.inf, np.nan])
    array = (values != 0) if dtype == "bool" else values.astype(BFLOAT16 if dtype == "bfloat16" else dtype)
    tensor = backend.to_backend(array, "cpu")
    assert str(tensor.dtype) == f"torch.{dtype}"
    back = backend.to_numpy(tensor)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back.view(np.uint8), array.view(np.uint8))  # same bits, -0.0 and NaN included
    assert TORCH.from_host(array, like=tensor).dtype == tensor.dtype
    assert backend.devices()[0] == "cpu" and ("cuda" in backend.devices()) == torch.cuda.is_available()
