"""The optimizer hook zeroes the pruned entries of each step's gradients exactly, on every backend:
a NaN or negative gradient at a pruned entry leaves the weight at +0.0 (on torch the hook ANDs the
gradient's bits in place; multiplying by the mask gave NaN and -0.0 there). On tensorflow a traced
step runs the masking and the optimizer's update as one XLA function."""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import pytest

from fggp.keras import capture
from fggp.keras.capture import OptimizerHook

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="XLA-compiled masked update: tensorflow backend only"
)
OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9), "adam": lambda: keras.optimizers.Adam(0.1)}


def pruned_mask() -> np.ndarray:
    mask = np.ones((4, 3), bool)
    mask[0, 0] = mask[1, 2] = mask[3, 1] = False
    return mask


def bad_gradient(kept: float | np.ndarray) -> np.ndarray:
    """A gradient with NaN, a negative value and inf at the pruned entries of ``pruned_mask``."""
    grad = np.broadcast_to(np.asarray(kept, "float32"), (4, 3)).copy()
    grad[0, 0], grad[1, 2], grad[3, 1] = np.nan, -3.0, np.inf
    return grad


@contextlib.contextmanager
def hooked(opt, kernel: keras.Variable, mask: np.ndarray):
    """``opt`` built for ``kernel`` with an installed hook holding ``mask``; uninstalled after."""
    opt.build([kernel])
    hook = OptimizerHook(opt, [kernel], capture=False)
    hook.install()
    try:
        hook.set_masks([mask])
        yield hook
    finally:
        hook.uninstall()


def assert_pruned_at_positive_zero(kernel: keras.Variable, mask: np.ndarray) -> np.ndarray:
    w = keras.ops.convert_to_numpy(kernel.value)
    assert np.all(w[~mask] == 0.0) and not np.any(np.signbit(w[~mask])), w
    assert np.all(np.isfinite(w))
    return w


def traced_apply(opt, kernel):
    """``opt.apply`` on ``kernel`` inside a ``tf.function``, as Keras's train step calls it."""
    import tensorflow as tf

    return tf.function(lambda g: opt.apply([g], [kernel]))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_a_nan_or_negative_gradient_at_a_pruned_entry_leaves_it_at_positive_zero(optimizer):
    start = np.arange(1.0, 13.0, dtype="float32").reshape(4, 3)
    kernel, opt, mask = keras.Variable(start, name="kernel"), OPTIMIZERS[optimizer](), pruned_mask()
    with hooked(opt, kernel, mask) as hook:
        for _ in range(3):  # the torch AND mask is built once and reused
            opt.apply([keras.ops.convert_to_tensor(bad_gradient(0.5))], [kernel])
        w = assert_pruned_at_positive_zero(kernel, mask)
        assert np.all(w[mask] < start[mask])
        mask[2, 2] = False  # new masks (an event): the hook follows them
        hook.set_masks([mask])
        opt.apply([keras.ops.convert_to_tensor(np.full((4, 3), -1.0, "float32"))], [kernel])
        assert_pruned_at_positive_zero(kernel, mask)


@TF_ONLY
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_tensorflow_compiles_the_masked_update_with_xla_and_it_matches_op_by_op(optimizer, monkeypatch):
    """In a traced step (Keras on CPU: not XLA) the hook runs masking and update as one XLA function;
    pruned entries stay +0.0 under a NaN/inf/negative gradient, and kept entries match op by op."""
    import tensorflow as tf

    results = {}
    for xla in (True, False):
        monkeypatch.setattr(capture, "TF_XLA_APPLY", xla)
        kernel, opt = keras.Variable(np.arange(1.0, 13.0, dtype="float32").reshape(4, 3)), OPTIMIZERS[optimizer]()
        with hooked(opt, kernel, pruned_mask()) as hook:
            step = traced_apply(opt, kernel)
            for _ in range(3):
                step(tf.constant(bad_gradient(np.linspace(-2.0, 3.0, 12).reshape(4, 3))))
            assert (hook._xla is not None) == xla
            results[xla] = assert_pruned_at_positive_zero(kernel, pruned_mask())
    np.testing.assert_allclose(results[True], results[False], rtol=1e-6, atol=0)  # XLA may fuse into FMAs


@TF_ONLY
def test_tensorflow_keeps_the_update_op_by_op_with_a_constraint_or_a_user_optimizer():
    """Constraints and user optimizers are user code, which XLA may not compile: no XLA there."""
    import tensorflow as tf

    class MyOpt(keras.optimizers.SGD):
        pass

    for constraint, opt in ((keras.constraints.NonNeg(), keras.optimizers.SGD(0.1)), (None, MyOpt(0.1))):
        kernel = keras.Variable(np.ones((4, 3), "float32"), name="kernel")
        kernel.constraint = constraint  # as Layer.add_weight(constraint=...) sets it
        with hooked(opt, kernel, pruned_mask()) as hook:
            traced_apply(opt, kernel)(tf.ones((4, 3)))
            assert hook._xla is None
            assert_pruned_at_positive_zero(kernel, pruned_mask())
