"""GraNet through model.fit: prune by magnitude, regrow by gradient, counts exact after every event."""

from __future__ import annotations

import numpy as np

import fggp.keras
import fggp_core as F
from tests.keras import models
from tests.keras.test_fit import assert_pruned_weights_zero, spy_events


def test_granet_fit_regrows_exactly_as_the_core_and_keeps_counts_exact():
    x, y = models.digits()
    model = models.compile(models.mlp())
    schedule = models.schedule(end=50, frequency=10, final=0.8)
    method = F.GraNet(total_steps=84, initial=0.5, minimum=0.005)
    cb = fggp.keras.PruningCallback(method, schedule, scope="layerwise")
    records = spy_events(cb)
    model.fit(x, y, batch_size=64, epochs=3, callbacks=[cb], verbose=0, shuffle=False)

    assert [r["step"] for r in records] == schedule.events()[1:]
    regrown = 0
    for r in records:
        expected = F.select(method, r["weights"], r["grads"], r["before"], r["k"], scope="layerwise", step=r["step"])
        for name, mask in expected.items():
            np.testing.assert_array_equal(r["after"][name], mask)
            assert mask.size - int(mask.sum()) == round(mask.size * schedule.sparsity(r["step"]))
            regrown += int(np.sum(r["after"][name] & ~r["before"][name]))
            if not r["before"][name].all():  # regrowth ranks pruned entries by their dense gradient
                assert np.any(r["grads"][name][~r["before"][name]] != 0), (name, r["step"])
    assert regrown > 0  # the masks gained entries: GraNet regrew
    assert_pruned_weights_zero(model, cb.masks)
