"""TfmotPolynomialDecay reproduces tensorflow-model-optimization's PolynomialDecay: the same event
steps, the same float32 sparsity and the same kept count per tensor. tfmot (Keras 2 only) is not
installed; its formulas are restated here from pruning_schedule.py and pruning_impl.py."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fggp_core as F


def tfmot_should_prune(step, begin, end, frequency):
    # PruningSchedule._should_prune_in_step
    return begin <= step and (step <= end or end < 0) and (step - begin) % frequency == 0


def tfmot_sparsity(step, initial, final, begin, end, power):
    # PolynomialDecay.__call__: float32 tensors; Python scalars become float32 constants
    p = np.float32(step - begin) / np.float32(end - begin)
    p = np.minimum(np.float32(1.0), np.maximum(np.float32(0.0), p))
    # scalar float32 ** is libm powf, as TensorFlow's CPU pow kernel (np.power's SIMD loop can differ by an ulp)
    return np.float32(initial - final) * (np.float32(1) - p) ** np.float32(power) + np.float32(final)


def tfmot_kept(size, sparsity):
    # Pruning._update_mask: k = int32(max(round(float32(size) * (1 - sparsity)), 1)), round half to even
    return int(np.maximum(np.round(np.float32(size) * (np.float32(1) - sparsity)), np.float32(1)))


configs = st.tuples(
    st.floats(0.0, 0.5), st.floats(0.5, 0.99), st.integers(0, 50), st.integers(1, 400), st.sampled_from([1, 2, 3]),
    st.integers(1, 40),
)


@given(configs, st.lists(st.integers(1, 5000), min_size=1, max_size=4))
def test_events_sparsities_and_kept_counts_equal_tfmots(config, sizes):
    initial, final, begin, length, power, frequency = config
    end = begin + length
    schedule = F.TfmotPolynomialDecay(initial, final, begin, end, power=power, frequency=frequency)
    steps = range(0, end + 2 * frequency + 2)
    expected_events = [t for t in steps if tfmot_should_prune(t, begin, end, frequency)]
    assert [t for t in steps if schedule.is_event(t)] == expected_events == schedule.events()
    shapes = {f"w{i}": (n,) for i, n in enumerate(sizes)}
    for t in schedule.events():
        expected = tfmot_sparsity(t, initial, final, begin, end, power)
        assert schedule.sparsity(t) == float(expected)
        pruned = F.pruner.targets(schedule, "layerwise", "uniform", shapes, t)
        assert [n - p for n, p in zip(sizes, pruned)] == [tfmot_kept(n, expected) for n in sizes]


def test_differs_from_fggps_own_schedule_where_tfmot_does():
    ours = F.PolynomialSchedule(0.0, 0.8, 0, 25, 10)
    tfmot = F.TfmotPolynomialDecay(0.0, 0.8, 0, 25, frequency=10)
    assert ours.events() == [0, 10, 20, 25] and tfmot.events() == [0, 10, 20]
    # a 1-entry tensor: tfmot keeps 1 (max(1, .)); float32 sparsity, not float64
    assert tfmot.target_pruned(20, 1) == 0
    assert tfmot.sparsity(10) == float(np.float32(0.8) * (1 - (1 - np.float32(0.4)) ** 3))


def test_a_layerwise_magnitude_run_keeps_tfmots_count_and_mask_per_tensor():
    rng = np.random.default_rng(0)
    weights = {"dense": rng.standard_normal((30, 20)).astype(np.float32), "conv": rng.standard_normal(333).astype("f4")}
    schedule = F.TfmotPolynomialDecay(0.1, 0.75, 2, 12, frequency=3)
    pruner = F.Pruner(F.Magnitude(), schedule, scope="layerwise")
    pruner.init_masks(weights)
    for _ in range(14):
        if pruner.advance():
            pruner.prune(weights)
            s = tfmot_sparsity(pruner.step, 0.1, 0.75, 2, 12, 3)
            for name, w in weights.items():
                k = tfmot_kept(w.size, s)
                threshold = np.sort(np.abs(w).ravel())[::-1][k - 1]  # tfmot: |w| >= the k-th largest
                assert np.array_equal(pruner.masks[name], np.abs(w) >= threshold), (pruner.step, name)
                weights[name] = np.where(pruner.masks[name], w, 0).astype(np.float32)
    assert [e.step for e in [pruner.last_event]] == [11]


def test_constant_is_tfmots_constant_sparsity_and_the_config_round_trips():
    schedule = F.TfmotPolynomialDecay.constant(0.6, begin_step=5)
    assert schedule.events()[0] == 5 and schedule.sparsity(5) == schedule.sparsity(900) == float(np.float32(0.6))
    assert F.schedule_from_config(schedule.to_config()) == schedule
    with pytest.raises(F.ConfigError, match="power"):
        F.TfmotPolynomialDecay(0.0, 0.5, 0, 10, power="3")


def test_sparsity_equals_tensorflows_own_float32_ops():
    tf = pytest.importorskip("tensorflow")
    for initial, final, begin, end, power in [(0.0, 0.5, 0, 11, 3), (0.2, 0.9, 5, 97, 3), (0.0, 0.8, 0, 1000, 2)]:
        schedule = F.TfmotPolynomialDecay(initial, final, begin, end, power=power, frequency=1)
        # PolynomialDecay.__call__, op for op, on a scalar step as tfmot runs it (a vector of steps would take
        # TensorFlow's vectorised pow, which can differ by an ulp)
        for t in range(begin, end + 1, 7):
            step = tf.constant(t)
            ratio = tf.math.divide(tf.cast(step - begin, tf.float32), end - begin)
            p = tf.math.minimum(1.0, tf.math.maximum(0.0, ratio))
            expected = tf.math.add(tf.math.multiply(initial - final, tf.math.pow(1 - p, power)), final)
            assert schedule.sparsity(t) == float(expected.numpy()), t
