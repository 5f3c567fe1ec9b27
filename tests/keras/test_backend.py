"""KerasBackend's primitives keep the core's integer types on every Keras backend.

Keras's own type promotion maps 64-bit types to 32-bit in some ops (ops.cumsum and
ops.minimum on torch, ops.floor of float64): counts, float64 keys and pool sizes must not pass
through those. The primitives' values are checked against NumPy in tests/test_contract.py.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import fggp.keras
import fggp_core as F
from fggp.keras import KERAS
from fggp_core.selection import kth_key

X64 = KERAS.max_count == 2**63 - 1  # False only on JAX without x64


def dtype(x) -> str:
    return keras.backend.standardize_dtype(x.dtype)


def test_counts_are_backend_integer_scalars_of_the_count_type():
    mask = keras.ops.convert_to_tensor(np.arange(10) % 3 == 0)
    count = KERAS.count(mask)
    assert keras.ops.is_tensor(count) and tuple(count.shape) == ()
    assert dtype(count) == ("int64" if X64 else "int32") and int(count) == 4
    big = KERAS.scalar(2**40 if X64 else 2**30, mask)
    assert dtype(KERAS.minimum(big, big)) == dtype(count) and int(KERAS.minimum(big, count)) == 4
    keys = KERAS.keys(keras.ops.cast(mask, "float32"), None, "float32")
    histogram = KERAS.histogram(keys, 15, 16, KERAS.scalar(0, mask))
    digit, rank = KERAS.pick(histogram, KERAS.scalar(5, mask))
    assert dtype(histogram) == dtype(digit) == dtype(rank) == dtype(count)
    assert KERAS.to_host(KERAS.first_true(mask, big)).tolist() == KERAS.to_host(mask).tolist()


@pytest.mark.parametrize("n", [7, 2**30 + 3, 2**40 + 12345])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 1 / 3, 0.9999999])
def test_floor_mul_is_the_hosts_float64_floor(n, rate):
    if n > KERAS.max_count:
        pytest.skip("beyond this backend's counts")
    assert int(KERAS.floor_mul(rate, KERAS.scalar(n))) == math.floor(rate * float(n))


def test_float64_keys_find_the_kth_key_where_keras_would_round_to_32_bits():
    if not X64:
        pytest.skip("JAX without x64 holds no float64")
    w = np.array([0.0, 0.0, 0.25, 0.5, -0.5, 1e-300, 3.0], np.float64)
    keys = KERAS.keys(keras.ops.convert_to_tensor(w, dtype="float64"), None, "float64")
    assert dtype(keys) == "int64"
    expected = np.sort(F.NUMPY.keys(w, None, "float64"))
    for k in range(1, w.size + 1):
        assert int(kth_key(KERAS, [keys], KERAS.scalar(k, keys), "float64")) == int(expected[k - 1])


def test_select_takes_backend_tensors_only():
    w = np.ones((2, 3), np.float32)
    with pytest.raises(F.InputMismatchError, match="tensors"):
        fggp.keras.select(F.Magnitude(), {"w": w}, None, {"w": np.ones((2, 3), bool)}, 1)
