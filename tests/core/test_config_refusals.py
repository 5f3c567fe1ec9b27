"""Non-finite numbers are refused at construction, with the argument named (issue 14, item 14)."""

from __future__ import annotations

import math

import pytest

import fggp_core as F

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("value", [NAN, -INF, INF, -1, 1.5])
def test_global_mp_refuses_min_keep_that_is_no_count_or_fraction(value):
    with pytest.raises(F.ConfigError) as error:
        F.GlobalMP(min_keep=value)
    assert error.value.argument == "min_keep" and "fraction" in str(error.value)


@pytest.mark.parametrize("make", [
    lambda p: F.PolynomialSchedule(0.0, 0.5, 0, 10, 1, power=p),
    lambda p: F.TfmotPolynomialDecay(0.0, 0.5, 0, 10, power=p),
])
@pytest.mark.parametrize("power", [NAN, INF])
def test_schedules_refuse_a_non_finite_power(make, power):
    with pytest.raises(F.ConfigError) as error:
        make(power)
    assert error.value.argument == "power" and "finite" in str(error.value)


def test_one_shot_at_step_zero_is_an_event_before_the_first_step():
    schedule = F.OneShotSchedule(0.9)
    assert schedule.is_event(0) and schedule.sparsity(0) == 0.9 and not schedule.is_event(1)
