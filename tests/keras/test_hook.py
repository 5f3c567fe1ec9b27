"""The optimizer hook zeroes the pruned entries of each step's gradients exactly, on every backend:
a NaN or negative gradient at a pruned entry leaves the weight at +0.0 (on torch the hook ANDs the
gradient's bits in place; multiplying by the mask gave NaN and -0.0 there)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fggp.keras.capture import OptimizerHook


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_nan_or_negative_gradient_at_a_pruned_entry_leaves_it_at_positive_zero(optimizer):
    kernel = keras.Variable(np.arange(1.0, 13.0, dtype="float32").reshape(4, 3), name="kernel")
    opt = {"sgd": keras.optimizers.SGD(0.1, momentum=0.9), "adam": keras.optimizers.Adam(0.1)}[optimizer]
    opt.build([kernel])
    hook = OptimizerHook(opt, [kernel], capture=False)
    hook.install()
    try:
        mask = np.ones((4, 3), bool)
        mask[0, 0] = mask[1, 2] = mask[3, 1] = False
        hook.set_masks([mask])
        grad = np.full((4, 3), 0.5, "float32")
        grad[0, 0], grad[1, 2], grad[3, 1] = np.nan, -3.0, np.inf
        for _ in range(3):  # the torch AND mask is built once and reused
            opt.apply([keras.ops.convert_to_tensor(grad)], [kernel])
        w = keras.ops.convert_to_numpy(kernel.value)
        assert np.all(w[~mask] == 0.0) and not np.any(np.signbit(w[~mask])), w
        assert np.all(np.isfinite(w)) and np.all(w[mask] < np.arange(1.0, 13.0).reshape(4, 3)[mask])
        mask[2, 2] = False  # new masks (an event): the hook follows them
        hook.set_masks([mask])
        opt.apply([keras.ops.convert_to_tensor(np.full((4, 3), -1.0, "float32"))], [kernel])
        w = keras.ops.convert_to_numpy(kernel.value)
        assert w[2, 2] == 0.0 and not np.signbit(w[2, 2])
    finally:
        hook.uninstall()
