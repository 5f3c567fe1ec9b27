"""model.fit with PruningCallback, end to end, on the process's Keras backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fggp.keras
import fggp_core as F
from tests.keras import models

BACKEND = keras.backend.backend()
JIT = [False, True] if BACKEND == "tensorflow" else ["auto"]


def spy_events(cb: fggp.keras.PruningCallback) -> list[dict]:
    """Record, at every event, the host copies of what the pruner got and what it chose."""
    records = []
    prune = cb.pruner.prune

    def recording(weights, grads=None):
        host = {n: np.array(keras.ops.convert_to_numpy(w)) for n, w in weights.items()}
        hgrads = None if grads is None else {n: np.array(keras.ops.convert_to_numpy(g)) for n, g in grads.items()}
        before, step = cb.masks, cb.pruner.step
        report = prune(weights, grads)
        records.append(dict(step=step, weights=host, grads=hgrads, before=before, k=report.k, after=cb.masks))
        return report

    cb.pruner.prune = recording  # the callback runs every event through Pruner.prune
    return records


def assert_pruned_weights_zero(model: keras.Model, masks: dict[str, np.ndarray]) -> None:
    weights = models.weights_of(model)
    for path, mask in masks.items():
        assert np.count_nonzero(weights[path][~mask]) == 0, path


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize(
    "method,scope",
    [(F.FGGP(0.5), "global"), (F.Magnitude(), "layerwise"), (F.Taylor(), "global")],
    ids=["fggp-global", "magnitude-layerwise", "taylor-global"],
)
def test_fit_reaches_exact_target_with_masks_equal_to_core(method, scope, jit):
    x, y = models.digits()
    model = models.compile(models.mlp(), jit_compile=jit)
    schedule = models.schedule(end=60, frequency=10)
    cb = fggp.keras.PruningCallback(method, schedule, scope=scope)
    records = spy_events(cb)
    n_opt = len(model.optimizer.variables) if model.optimizer.built else None
    model.fit(x, y, batch_size=64, epochs=3, callbacks=[cb], verbose=0, shuffle=False)

    assert [r["step"] for r in records] == schedule.events()[1:]  # step 0 prunes nothing (dense start)
    for r in records:  # the masks at each event are the core's on the captured inputs
        expected = F.select(method, r["weights"], r["grads"], r["before"], r["k"], scope=scope, step=r["step"])
        for name in expected:
            np.testing.assert_array_equal(r["after"][name], expected[name])
        if method.needs_grads:
            assert all(np.any(g != 0) for g in r["grads"].values())
    n = sum(m.size for m in cb.masks.values())
    if scope == "global":
        assert n - sum(int(m.sum()) for m in cb.masks.values()) == models.target(schedule, n)
    else:
        for m in cb.masks.values():
            assert m.size - int(m.sum()) == models.target(schedule, m.size)
    assert_pruned_weights_zero(model, cb.masks)
    # The optimizer is given back untouched: no fggp variables, its own apply.
    assert not any("fggp" in v.name for v in model.optimizer.variables)
    assert n_opt is None or len(model.optimizer.variables) == n_opt
    assert "apply" not in model.optimizer.__dict__


def test_pruned_entries_stay_zero_between_events_and_optimizer_state_is_masked():
    x, y = models.digits()
    model = models.compile(models.mlp(), optimizer="sgd")
    schedule = F.PolynomialSchedule(0.0, 0.5, 0, 10, 10)  # one event at step 10, then 19 plain steps
    cb = fggp.keras.PruningCallback(F.Magnitude(), schedule)
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if cb.pruner.step > 10 and cb.pruner.step % 5 == 0:
                if hasattr(self.model, "jax_state_sync"):
                    self.model.jax_state_sync()
                masks, weights = cb.masks, models.weights_of(self.model)
                momenta = {
                    v.name: np.array(keras.ops.convert_to_numpy(v.value)) for v in self.model.optimizer.variables
                }
                for path, mask in masks.items():
                    momentum = momenta[path.replace("/", "_") + "_momentum"]
                    seen.append((np.count_nonzero(weights[path][~mask]), np.count_nonzero(momentum[~mask])))

    model.fit(x, y, batch_size=64, epochs=1, callbacks=[cb, Watch()], verbose=0)
    assert seen and all(s == (0, 0) for s in seen), seen
    assert_pruned_weights_zero(model, cb.masks)


@pytest.mark.parametrize("build", [models.functional_cnn, models.subclassed], ids=["functional", "subclassed"])
def test_functional_and_subclassed_models_prune_their_kernels(build):
    x, y = models.digits()
    model = models.compile(build())
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), models.schedule(end=40, frequency=20))
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[cb], verbose=0)
    kernels = [v.path for v in model.weights if v.path.endswith("/kernel")]
    assert list(cb.masks) == kernels and len(kernels) >= 2
    n = sum(m.size for m in cb.masks.values())
    assert n - sum(int(m.sum()) for m in cb.masks.values()) == round(0.8 * n)
    assert_pruned_weights_zero(model, cb.masks)


def test_tf_data_and_generator_inputs():
    tf = pytest.importorskip("tensorflow")
    x, y = models.digits()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)

    def generator():
        while True:
            for i in range(0, len(x) - 63, 64):
                yield x[i : i + 64], y[i : i + 64]

    for data, kwargs in ((dataset, {}), (generator(), {"steps_per_epoch": 28})):
        model = models.compile(models.mlp())
        schedule = models.schedule(end=50, frequency=25)
        cb = fggp.keras.PruningCallback(F.FGGP(0.5), schedule)
        model.fit(data, epochs=2, callbacks=[cb], verbose=0, shuffle=False, **kwargs)  # already ordered: no warning
        assert [e.step for e in cb.events] == [25, 50]
        n = sum(m.size for m in cb.masks.values())
        assert n - sum(int(m.sum()) for m in cb.masks.values()) == models.target(schedule, n)
        assert_pruned_weights_zero(model, cb.masks)


def test_resumed_fit_continues_the_schedule_from_the_optimizer_iterations():
    x, y = models.digits()
    schedule = models.schedule(end=100, frequency=20)  # 29 steps per epoch at batch 64
    model = models.compile(models.mlp())
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), schedule)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[cb], verbose=0)
    assert [e.step for e in cb.events] == [20, 40]
    state = cb.state_dict()
    masks_at_58 = cb.masks

    # The same callback, and a fresh one restored from the plain state, both continue at step 59.
    resumed = fggp.keras.PruningCallback.from_config(cb.get_config())
    resumed.load_state_dict(state)
    model.fit(x, y, batch_size=64, epochs=4, initial_epoch=2, callbacks=[resumed], verbose=0)
    assert [e.step for e in resumed.events] == [60, 80, 100]
    n = sum(m.size for m in resumed.masks.values())
    assert n - sum(int(m.sum()) for m in resumed.masks.values()) == models.target(schedule, n)
    for name, mask in resumed.masks.items():  # masks only shrink
        assert not np.any(mask & ~masks_at_58[name])
    assert_pruned_weights_zero(model, resumed.masks)


def test_a_new_callback_on_a_run_in_progress_takes_the_zeros_as_pruned():
    x, y = models.digits()
    model = models.compile(models.mlp())
    first = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(end=100, frequency=20))
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[first], verbose=0)
    joined = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(end=100, frequency=20))
    model.fit(x, y, batch_size=64, epochs=2, initial_epoch=1, callbacks=[joined], verbose=0)
    assert [e.step for e in joined.events] == [40]
    for name, mask in joined.masks.items():
        assert not np.any(mask & ~first.masks[name])


def test_sparse_start_is_applied_before_training():
    x, y = models.digits()
    model = models.compile(models.mlp())
    start = F.SparseStart(0.5, "erk", seed=3)
    cb = fggp.keras.PruningCallback(F.Magnitude(), F.PolynomialSchedule(0.5, 0.8, 0, 40, 20), sparse_start=start)
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[cb], verbose=0)
    shapes = {v.path: tuple(v.shape) for v in model.weights if v.path.endswith("kernel")}
    initial = F.random_masks(shapes, start)
    for name, mask in cb.masks.items():
        assert not np.any(mask & ~initial[name])
    report = cb.layer_report()
    assert set(report) == set(shapes) and all(0 < r["density"] < 1 for r in report.values())


def test_mixed_precision_loss_scale_optimizer():
    x, y = models.digits()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = models.mlp()
        models.compile(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    schedule = models.schedule(end=40, frequency=20)
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), schedule)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[cb], verbose=0)
    assert [e.step for e in cb.events] == [20, 40]
    n = sum(m.size for m in cb.masks.values())
    assert n - sum(int(m.sum()) for m in cb.masks.values()) == models.target(schedule, n)
    assert_pruned_weights_zero(model, cb.masks)


class Drift(keras.optimizers.Optimizer):
    """SGD that also moves every entry by 1e-3 per step, zero gradient or not."""

    def update_step(self, gradient, variable, learning_rate):
        lr = keras.ops.cast(learning_rate, variable.dtype)
        self.assign_sub(variable, lr * gradient - 1e-3)


def test_an_optimizer_that_moves_zero_gradient_entries_is_re_masked_every_step():
    x, y = models.digits()
    model = models.mlp()
    model.compile(Drift(learning_rate=0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = fggp.keras.PruningCallback(F.Magnitude(), F.PolynomialSchedule(0.0, 0.5, 0, 10, 10))
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if cb.pruner.step > 10:
                if hasattr(self.model, "jax_state_sync"):
                    self.model.jax_state_sync()
                weights = models.weights_of(self.model)
                seen.append(sum(np.count_nonzero(weights[p][~m]) for p, m in cb.masks.items()))

    model.fit(x, y, batch_size=64, epochs=1, callbacks=[cb, Watch()], verbose=0)
    assert len(seen) == 19 and not any(seen), seen
    assert not fggp.keras.capture.keeps_zeros(model.optimizer)


@pytest.mark.skipif(BACKEND != "torch", reason="the lift is for torch's CPU sqrt, which is slow on exact zeros")
@pytest.mark.parametrize(
    "make",
    [lambda: keras.optimizers.Adam(1e-2), lambda: keras.optimizers.Adam(1e-2, amsgrad=True),
     lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.05)],
    ids=["adam", "adam-amsgrad", "adamw"],
)
def test_lifted_second_moments_change_no_bit_and_are_zero_after_every_update(make, monkeypatch):
    x, y = models.digits()
    x, y = x[:512], y[:512]

    def run():
        model = models.mlp()
        model.compile(make(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        cb = fggp.keras.PruningCallback(F.Magnitude(), F.PolynomialSchedule(0.0, 0.8, 0, 4, 2))
        lifts, after = [], []

        class Watch(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):  # after the pruning callback's: its hook is installed
                hook = cb._hook
                real = hook._lift

                def recording():
                    lifts.append(real())
                    return lifts[-1]

                hook._lift = recording

            def on_train_batch_end(self, batch, logs=None):
                opt = self.model.optimizer
                for path, mask in cb.masks.items():
                    for v in opt.variables:
                        if v.name.startswith(path.replace("/", "_") + "_") and tuple(v.shape) == mask.shape:
                            after.append(np.count_nonzero(keras.ops.convert_to_numpy(v.value)[~mask]))

        model.fit(x, y, batch_size=64, epochs=2, callbacks=[cb, Watch()], verbose=0, shuffle=False)
        state = [np.array(keras.ops.convert_to_numpy(v.value)) for v in [*model.weights, *model.optimizer.variables]]
        return state, lifts, after

    lifted, lifts, after = run()
    assert any(lifts) and after and not any(after)  # lifted during updates, +0.0 after each one
    monkeypatch.setattr("fggp.torch.masking.LIFT_MIN_PRUNED", 2.0)  # never lift
    plain, lifts, _ = run()
    assert not any(lifts)
    for a, b in zip(plain, lifted):
        np.testing.assert_array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))
