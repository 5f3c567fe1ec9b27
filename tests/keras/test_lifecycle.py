"""The callback across ordinary training paths: mid-fit checkpoints, resume after load_model, reuse for
another model, mixed precision with skipped steps, kernel constraints, models built during fit."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import fggp.keras
import fggp_core as F
from tests.keras import models

BACKEND = keras.backend.backend()


def fit(model, callbacks, epochs=1, steps=29, **kwargs):
    """``steps`` batches of 64 digits per epoch (29: all of them)."""
    x, y = models.digits()
    x, y = x[: steps * 64], y[: steps * 64]
    model.fit(x, y, batch_size=64, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False, **kwargs)


def pruned(masks: dict[str, np.ndarray]) -> int:
    return sum(m.size - int(m.sum()) for m in masks.values())


def assert_exact_and_zero(model, cb, schedule):
    n = sum(m.size for m in cb.masks.values())
    assert pruned(cb.masks) == models.target(schedule, n)
    weights = {v.path: np.asarray(keras.ops.convert_to_numpy(v.value)) for v in model.weights}
    for path, mask in cb.masks.items():
        assert np.count_nonzero(weights[path][~mask]) == 0, path


def assert_optimizer_restored(model):
    assert "apply" not in model.optimizer.__dict__
    assert not any("fggp" in v.name for v in model.optimizer.variables)


def iterations(model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def test_mid_fit_checkpoint_keeps_optimizer_state_and_a_new_callback_continues_the_schedule(tmp_path):
    schedule = models.schedule(end=40, frequency=10)  # 20 steps per epoch: events 10, 20 | 30, 40
    model = models.compile(models.mlp())
    first = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    path = str(tmp_path / "mid.keras")
    # ModelCheckpoint saves at on_epoch_end, while fggp's hook is on the optimizer.
    fit(model, [first, keras.callbacks.ModelCheckpoint(path)], steps=20)
    loaded, messages = load_quietly(path)
    assert not [m for m in messages if "Skipping variable loading" in m]
    assert iterations(loaded) == 20
    saved = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
    for v, expected in zip(loaded.optimizer.variables, saved, strict=True):  # Adam moments included
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), expected)

    resumed = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    fit(loaded, [resumed], epochs=2, initial_epoch=1, steps=20)
    assert [e.step for e in resumed.events] == [30, 40]
    for (name, mask), before in zip(resumed.masks.items(), first.masks.values()):
        assert not np.any(mask & ~before), name  # pruned entries stayed pruned
    assert_exact_and_zero(loaded, resumed, schedule)


def test_backup_and_restore_listed_after_the_callback_resumes_the_schedule(tmp_path):
    schedule = models.schedule(end=20, frequency=5)
    backup = str(tmp_path / "backup")
    first = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    keep = keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)
    fit(models.compile(models.mlp()), [first, keep], steps=10)
    # A new process would start like this: a fresh model, the backup restored in on_train_begin.
    model = models.compile(models.mlp(seed=1))
    resumed = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    fit(model, [resumed, keras.callbacks.BackupAndRestore(backup)], epochs=2, steps=10)
    assert [e.step for e in resumed.events] == [15, 20]
    for mask, before in zip(resumed.masks.values(), first.masks.values()):
        assert not np.any(mask & ~before)
    assert_exact_and_zero(model, resumed, schedule)


def test_state_dict_resume_after_load_model_matches_paths_without_the_model_prefix(tmp_path):
    schedule = models.schedule(end=40, frequency=10)
    model = models.compile(models.mlp())
    first = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    fit(model, [first], steps=20)
    state = first.state_dict()
    model.save(tmp_path / "after.keras")
    loaded = keras.models.load_model(tmp_path / "after.keras")

    resumed = fggp.keras.PruningCallback.from_config(first.get_config())
    resumed.load_state_dict(state)
    fit(loaded, [resumed], epochs=2, initial_epoch=1, steps=20)
    kernels = [v.path for v in loaded.weights if v.path.endswith("kernel")]
    assert list(resumed.masks) == kernels
    assert [e.step for e in resumed.events] == [30, 40]
    for mask, before in zip(resumed.masks.values(), state["masks"].values()):
        assert not np.any(mask & ~before)
    assert_exact_and_zero(loaded, resumed, schedule)


def mlp(width: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(10)]
    return models.compile(keras.Sequential(layers, name="mlp"))


def test_a_callback_reused_for_another_model_starts_afresh_on_it():
    schedule = models.schedule(end=10, frequency=5)
    cb = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    paths = []
    for seed, width in ((0, 48), (1, 48), (2, 32)):  # same variable paths, then another width
        keras.backend.clear_session()
        model = mlp(width, seed)
        fit(model, [cb], steps=10)
        paths.append(list(cb.masks))
        assert [e.step for e in cb.events] == [5, 10]
        first = cb.events[0]  # scored this model's own dense weights
        assert first.k == round(first.total * schedule.sparsity(5)) > 0
        assert all(m.shape == tuple(model.get_layer(index=i).kernel.shape) for i, m in enumerate(cb.masks.values()))
        assert_exact_and_zero(model, cb, schedule)
        assert iterations(model) == cb.pruner.step == 10
    assert paths[0] == paths[1] == paths[2]


def test_loading_a_state_of_other_shapes_fails_before_changing_anything():
    keras.backend.clear_session()
    first = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(end=10, frequency=5))
    fit(mlp(48, 0), [first], steps=10)
    state = first.state_dict()
    keras.backend.clear_session()
    model = mlp(32, 0)  # the same paths, another width
    model.optimizer.build(model.trainable_variables)
    before = models.weights_of(model)
    cb = fggp.keras.PruningCallback.from_config(first.get_config())
    cb.load_state_dict(state)
    with pytest.raises(F.InputMismatchError, match="shape"):
        fit(model, [cb], steps=10)
    assert_optimizer_restored(model)
    assert iterations(model) == 0
    for path, value in models.weights_of(model).items():
        np.testing.assert_array_equal(value, before[path])


def load_quietly(path):
    """``keras.models.load_model`` and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path)
    return loaded, [str(w.message) for w in caught]


def test_mixed_precision_counts_only_the_steps_the_loss_scaler_applies(tmp_path):
    x, y = models.digits()
    weight = np.ones(len(x), "float32")
    weight[9 * 64 : 10 * 64] = 1e9  # batch 10 (an event step by batch count) overflows in float16: skipped
    weight[21 * 64 : 22 * 64] = 1e9  # batch 22: skipped too (between events)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.compile(models.mlp())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    schedule = models.schedule(end=20, frequency=10)
    at_events = []
    cb = fggp.keras.PruningCallback(
        F.FGGP(0.5), schedule, on_event=lambda report: at_events.append((report.step, iterations(model)))
    )
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "mixed.keras"))
    model.fit(x, y, sample_weight=weight, batch_size=64, epochs=1, callbacks=[cb, checkpoint], verbose=0, shuffle=False)
    applied = iterations(model)
    assert applied <= 27  # at least the two forced overflows were skipped
    assert at_events == [(10, 10), (20, 20)]  # events follow applied steps
    assert cb.pruner.step == applied
    assert_exact_and_zero(model, cb, schedule)
    # The checkpoint taken during fit holds the loss scaler's and Adam's state, not fggp's.
    keras.mixed_precision.set_global_policy("mixed_float16")  # Keras rebuilds the LossScaleOptimizer only so
    try:
        loaded, messages = load_quietly(tmp_path / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert not [m for m in messages if "Skipping variable loading" in m]
    assert iterations(loaded) == applied
    assert float(keras.ops.convert_to_numpy(loaded.optimizer.dynamic_scale)) < 2.0**15  # halved by the overflows


class Centre(keras.constraints.Constraint):
    """Moves every entry: w - mean(w) does not keep 0.0 at 0.0."""

    def __call__(self, w):
        return w - keras.ops.mean(w)


def test_a_constraint_that_moves_zeros_does_not_revive_pruned_weights():
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(48, activation="relu", kernel_constraint=Centre())
    model = models.compile(keras.Sequential([keras.Input((64,)), dense, keras.layers.Dense(10)]))
    cb = fggp.keras.PruningCallback(F.Magnitude(), F.PolynomialSchedule(0.0, 0.5, 0, 5, 5))
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if cb.pruner.step >= 5:
                report = fggp.keras.sparsity_report(self.model)
                weights = models.weights_of(self.model)
                seen.append(sum(np.count_nonzero(weights[p][~m]) for p, m in cb.masks.items()))
                assert report[dense.kernel.path]["zeros"] >= cb.layer_report()[dense.kernel.path]["pruned"]

    fit(model, [cb, Watch()], steps=12)
    assert len(seen) == 8 and not any(seen), seen


def subclassed_unbuilt() -> keras.Model:
    keras.utils.set_random_seed(0)
    return models.Subclassed(name="sub")


def sequential_unbuilt() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])


@pytest.mark.parametrize("build", [sequential_unbuilt, subclassed_unbuilt], ids=["sequential", "subclassed"])
def test_a_model_built_by_fit_itself_is_pruned(build):
    model = models.compile(build())
    schedule = models.schedule(end=10, frequency=5)
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), schedule)
    fit(model, [cb], steps=10)
    assert list(cb.masks) == [v.path for v in model.weights if v.path.endswith("kernel")]
    assert [e.step for e in cb.events] == [5, 10]
    assert_exact_and_zero(model, cb, schedule)
    assert_optimizer_restored(model)


def test_sparsity_report_inside_a_user_callback_during_fit():
    model = models.compile(models.mlp())
    cb = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(end=10, frequency=10))
    reports = []

    class Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch in (3, 11):  # `model`, not self.model: on JAX only the latter syncs the training state
                reports.append(fggp.keras.sparsity_report(model))

    fit(model, [cb, Report()], steps=12)
    assert reports[0][model.layers[0].kernel.path]["zeros"] == 0
    for path, row in reports[1].items():
        assert row["zeros"] == cb.layer_report()[path]["pruned"] > 0
