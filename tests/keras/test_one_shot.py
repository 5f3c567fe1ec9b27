"""An event at step 0 (``OneShotSchedule(s)``'s default) happens before the first update, as on every adapter
(issue 14, item 4): the callback selects at ``on_train_begin`` on the weights fit starts from."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fggp.keras
import fggp_core as F
from tests.keras.models import digits, mlp

N = 64 * 48 + 48 * 10


def fit(model, callback, steps=3):
    x, y = digits()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x[: 16 * steps], y[: 16 * steps], batch_size=16, epochs=1, verbose=0, callbacks=[callback])


@pytest.mark.parametrize("method", [F.GlobalMP(min_keep=4), F.Magnitude()])
def test_one_shot_at_step_zero_prunes_the_weights_fit_starts_from(method):
    model = mlp()
    kernels = {v.path: keras.ops.convert_to_numpy(v.value).copy() for v in model.weights if v.path.endswith("kernel")}
    callback = fggp.keras.PruningCallback(method, F.OneShotSchedule(0.9))
    fit(model, callback)
    masks = callback.pruner.masks
    names = dict(zip(kernels, masks))  # canonical order: model.weights order on both sides
    expected = F.select(method, {names[p]: w for p, w in kernels.items()}, None,
                        {n: np.ones(np.shape(m), bool) for n, m in masks.items()}, round(N * 0.9), step=0)
    assert callback.pruner.last_event.step == 0 and callback.pruner.sparsity() == round(N * 0.9) / N
    assert all(np.array_equal(np.asarray(keras.ops.convert_to_numpy(masks[n])), m) for n, m in expected.items())
    for v in model.weights:
        if v.path in names:
            mask = np.asarray(keras.ops.convert_to_numpy(masks[names[v.path]]))
            assert np.all(keras.ops.convert_to_numpy(v.value)[~mask] == 0.0)


def test_a_gradient_method_with_an_event_at_step_zero_is_refused():
    callback = fggp.keras.PruningCallback(F.FGGP(0.5), F.OneShotSchedule(0.9))
    with pytest.raises(F.ConfigError, match="step 0.*no gradients"):
        fit(mlp(), callback)
