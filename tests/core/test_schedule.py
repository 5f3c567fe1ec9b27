"""Schedules: SPEC's formula, event rules and rounding."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fggp_core as F


def test_cubic_schedule_endpoints_and_midpoint():
    s = F.PolynomialSchedule(0.0, 0.9, begin_step=0, end_step=100, frequency=10)
    assert s.sparsity(0) == 0.0
    assert s.sparsity(100) == 0.9
    assert s.sparsity(50) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert s.sparsity(1000) == 0.9 and s.sparsity(-5) == 0.0


def test_rounding_is_round_half_to_even_on_float64():
    s = F.OneShotSchedule(0.95)
    assert s.target_pruned(0, 100) == 95  # 0.95 * 100 = 94.999...: rounds to 95, not truncated to 94
    assert F.OneShotSchedule(0.5).target_pruned(0, 5) == 2  # 2.5 -> 2 (half to even)
    assert F.OneShotSchedule(0.5).target_pruned(0, 7) == 4  # 3.5 -> 4


def test_last_event_lands_on_end_step_even_off_the_frequency_grid():
    s = F.PolynomialSchedule(0.0, 0.8, begin_step=3, end_step=20, frequency=5)
    assert s.events() == [3, 8, 13, 18, 20]
    assert [t for t in range(0, 30) if s.is_event(t)] == s.events()
    assert s.target_pruned(20, 1000) == 800


@given(
    st.floats(0, 0.5), st.floats(0.5, 0.99), st.integers(0, 50), st.integers(1, 200), st.integers(1, 30),
    st.sampled_from([1, 2, 3]), st.integers(0, 10**7),
)
def test_targets_are_monotone_and_end_exactly_at_final_sparsity(si, sf, t0, span, freq, power, n):
    s = F.PolynomialSchedule(si, sf, t0, t0 + span, freq, power)
    targets = [s.target_pruned(t, n) for t in s.events()]
    assert targets == sorted(targets)
    assert targets[0] == round(n * si) and targets[-1] == round(n * sf)
    assert all(s.is_event(t) for t in s.events()) and s.events()[-1] == t0 + span


def test_linear_schedule_is_power_one():
    s = F.PolynomialSchedule(0.2, 0.6, 0, 4, 1, power=1)
    assert [s.sparsity(t) for t in range(5)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])


def test_callable_schedule_follows_the_same_event_and_rounding_rules():
    s = F.CallableSchedule(lambda t: 0.95 if t >= 10 else 0.5, begin_step=0, end_step=10, frequency=4)
    assert s.events() == [0, 4, 8, 10]
    assert s.target_pruned(10, 100) == 95
    bad = F.CallableSchedule(lambda t: 1.2, 0, 10, 1)
    with pytest.raises(F.ConfigError, match=r"fn\(3\)=1.2"):
        bad.sparsity(3)


def test_cosine_rate_anneals_from_initial_to_minimum():
    r = F.CosineRate(0.5, 0.005, 100)
    assert r(0) == 0.5 and r(100) == pytest.approx(0.005) and r(500) == pytest.approx(0.005)
    assert r(50) == pytest.approx(0.005 + 0.495 * (1 + math.cos(math.pi / 2)) / 2)


def test_schedules_and_methods_round_trip_through_plain_configs():
    for s in (F.PolynomialSchedule(0.1, 0.9, 2, 50, 7, 2), F.OneShotSchedule(0.9, 3)):
        assert F.schedule_from_config(s.to_config()) == s
    methods = [
        F.Magnitude(), F.Gradient(), F.Taylor(), F.Random(3), F.FGGP(0.3), F.GlobalMP(5), F.GlobalMP(0.01),
        F.TwoStage("magnitude", "gradient", extra_fraction=F.CosineRate(0.5, 0.005, 40)),
    ]
    for m in methods:
        assert F.method_from_config(m.to_config()) == m
