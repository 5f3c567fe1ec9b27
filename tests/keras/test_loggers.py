"""The Keras callback's loggers: ``sparsity`` in the epoch logs (History, CSVLogger) and ``on_event``."""

from __future__ import annotations

import csv

import keras
import pytest

import fggp.keras
from tests.keras import models


def test_history_and_csv_logger_record_the_reached_sparsity_and_on_event_gets_each_report(tmp_path):
    x, y = models.digits()
    model = models.compile(models.mlp())
    seen = []
    cb = fggp.keras.PruningCallback(fggp.Magnitude(), models.schedule(end=20, frequency=5), on_event=seen.append)
    path = tmp_path / "log.csv"
    history = model.fit(
        x[:256], y[:256], batch_size=32, epochs=3, verbose=0, callbacks=[cb, keras.callbacks.CSVLogger(str(path))]
    )
    per_epoch = history.history["sparsity"]
    assert len(per_epoch) == 3 and per_epoch[-1] == pytest.approx(cb.sparsity()) and per_epoch[0] < per_epoch[-1]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["sparsity"]) for r in rows] == pytest.approx(per_epoch)
    assert [r.step for r in seen] == [5, 10, 15, 20] and seen == cb.events
    last = seen[-1]
    assert last.sparsity == pytest.approx(0.8, abs=1e-3) and set(last.density) == set(cb.masks)
    assert last.density == {n: r["density"] for n, r in cb.layer_report().items()} and last.seconds > 0
