"""fggp.jax.wrap(on_event=...): a host report per event from inside jax.jit, none between events."""

from __future__ import annotations

import math

import jax
import optax
import pytest

import fggp.jax
import fggp_core as F
from tests.jax import mlp


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_on_event_reports_each_event_of_a_jitted_run_with_the_masks_counts(scope):
    seen = []
    schedule = F.PolynomialSchedule(0.0, 0.5, 0, 6, 2)
    tx = fggp.jax.wrap(optax.sgd(0.05), F.FGGP(), schedule, scope=scope, on_event=seen.append)
    params = mlp.init_params()
    state = tx.init(params)
    step = mlp.train_step(tx)
    x, y = mlp.batch()
    for _ in range(7):
        params, state = step(params, state, x, y)
    jax.effects_barrier()  # debug callbacks run asynchronously
    assert [r.step for r in seen] == [2, 4, 6]
    last = seen[-1]
    report = fggp.jax.layer_report(state)
    assert last.density == pytest.approx({n: r["density"] for n, r in report.items()})
    assert last.sparsity == pytest.approx(fggp.jax.sparsity(state)) and last.target_sparsity == 0.5
    assert not last.skipped and math.isnan(last.seconds)
    assert isinstance(last.k, int) if scope == "global" else set(last.k) == set(report)


def test_without_on_event_the_program_has_no_host_callback():
    def lowered(**kwargs):
        tx = fggp.jax.wrap(optax.sgd(0.05), F.Magnitude(), F.PolynomialSchedule(0.0, 0.5, 0, 6, 2), **kwargs)
        params = mlp.init_params()
        x, y = mlp.batch()
        return mlp.train_step(tx).lower(params, tx.init(params), x, y).as_text()

    assert "callback" not in lowered()
    assert "callback" in lowered(on_event=print)
