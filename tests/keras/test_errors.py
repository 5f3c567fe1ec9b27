"""Bad input gives a clear fggp error, and a failed event leaves everything as it was."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fggp.keras
import fggp_core as F
from tests.keras import models

BACKEND = keras.backend.backend()


def fit(model, cb, epochs=1, x=None, y=None, **kwargs):
    dx, dy = models.digits()
    x = dx if x is None else x
    y = dy if y is None else y
    model.fit(x, y, batch_size=64, epochs=epochs, callbacks=[cb], verbose=0, shuffle=False, **kwargs)


def assert_optimizer_restored(model):
    assert "apply" not in model.optimizer.__dict__
    assert not any("fggp" in v.name for v in model.optimizer.variables)


def test_nothing_prunable_is_a_config_error():
    model = models.compile(models.mlp())
    cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(), prunable=lambda path, v: False)
    with pytest.raises(F.ConfigError, match="prunable"):
        fit(model, cb)
    assert_optimizer_restored(model)


def test_unknown_variable_path_is_a_config_error_naming_it():
    model = models.compile(models.mlp())
    cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(), prunable=["mlp/nope"])
    with pytest.raises(F.ConfigError, match="mlp/nope"):
        fit(model, cb)


def test_bad_arguments_are_config_errors():
    with pytest.raises(F.ConfigError, match="prunable"):
        fggp.keras.PruningCallback(F.Magnitude(), models.schedule(), prunable=3)
    with pytest.raises(F.ConfigError, match="scope"):
        fggp.keras.PruningCallback(F.Magnitude(), models.schedule(), scope="per-layer")
    with pytest.raises(F.ConfigError, match="method"):
        fggp.keras.PruningCallback("fggp", models.schedule())


def test_paths_select_the_listed_variables_only():
    model = models.compile(models.mlp())
    path = model.layers[1].kernel.path
    cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(end=20), prunable=[path])
    fit(model, cb)
    assert list(cb.masks) == [path]


def test_gradient_method_without_an_optimizer_step_is_a_config_error():
    class ManualStep(models.Subclassed):
        """Updates its variables itself: the optimizer never sees a gradient."""

        if BACKEND == "jax":  # JAX's train step is stateless: state in, state out

            def train_step(self, state, data):
                trainable, non_trainable, optimizer, metrics = state
                trainable = [v * 0.999 for v in trainable]
                return {}, (trainable, non_trainable, optimizer, metrics)

        else:

            def train_step(self, data):
                for v in self.trainable_variables:
                    v.assign(v.value * 0.999)
                self.optimizer.iterations.assign_add(1)
                return {"loss": keras.ops.sum(keras.ops.zeros(()))}

    keras.utils.set_random_seed(0)
    model = ManualStep()
    model(np.zeros((1, 64), "float32"))
    models.compile(model)
    model.optimizer.build(model.trainable_variables)
    before = models.weights_of(model)
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), models.schedule(end=10, frequency=5))
    with pytest.raises(F.ConfigError, match="needs gradients"):
        fit(model, cb)
    assert all(m.all() for m in cb.masks.values())  # nothing pruned
    after = models.weights_of(model)
    assert all(np.count_nonzero(after[p]) == np.count_nonzero(before[p]) for p in cb.masks)
    assert_optimizer_restored(model)


@pytest.mark.parametrize("skip", [False, True])
def test_nonfinite_gradients_at_an_event_raise_or_skip_without_half_applying(skip):
    x, y = models.digits()
    x = x.copy()
    x[9 * 64 + 3, 5] = np.inf  # the 10th batch (step 10, an event) has an infinite input
    model = models.compile(models.mlp())
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), models.schedule(end=20, frequency=5), skip_nonfinite=skip)
    if not skip:
        with pytest.raises(F.NonFiniteScoreError):
            fit(model, cb, x=x, y=y)
        assert [e.step for e in cb.events] == [5]
        # Optimizer step 10 happened, so it counts (as optimizer.iterations does); its event changed nothing.
        assert cb.pruner.step == int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 10
        assert cb.pruner.last_event.step == 5 and cb.sparsity() == cb.events[0].sparsity
        assert_optimizer_restored(model)
        return
    with pytest.warns(RuntimeWarning, match="skipped"):
        fit(model, cb, x=x[: 12 * 64], y=y[: 12 * 64])
    assert [(e.step, e.skipped) for e in cb.events] == [(5, False), (10, True)]
    assert cb.events[1].pruned == cb.events[0].pruned  # masks untouched by the skipped event


def test_steps_per_execution_above_one_is_refused():
    if BACKEND == "torch":
        pytest.skip("the torch backend itself refuses steps_per_execution > 1")
    model = models.compile(models.mlp(), steps_per_execution=2)
    cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule())
    with pytest.raises(F.ConfigError, match="steps_per_execution"):
        fit(model, cb)


def test_uncompiled_model_is_a_config_error():
    cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule())
    cb.set_model(models.mlp())
    with pytest.raises(F.ConfigError, match="optimizer"):
        cb.on_train_begin()
