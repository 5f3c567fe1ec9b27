"""A pruned model saved as .keras is plain Keras: zeros kept, loads without fggp, same outputs.
Also: the callback's config and state are plain data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np

import fggp.keras
import fggp_core as F
from tests.keras import models

LOAD_WITHOUT_FGGP = """
import sys, json
import numpy as np
sys.modules["fggp"] = None; sys.modules["fggp_core"] = None   # importing fggp now fails
import keras
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[2], model.predict(np.load(sys.argv[3]), verbose=0))
zeros = {v.path: int(v.numpy().size - np.count_nonzero(v.numpy())) for v in model.weights}
print(json.dumps(zeros))
"""


def test_saved_pruned_model_loads_without_fggp_and_predicts_identically(tmp_path):
    x, y = models.digits()
    model = models.compile(models.functional_cnn())
    cb = fggp.keras.PruningCallback(F.FGGP(0.5), models.schedule(end=40, frequency=20))
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[cb], verbose=0)
    path, inputs, outputs = tmp_path / "pruned.keras", tmp_path / "x.npy", tmp_path / "y.npy"
    model.save(path)
    np.save(inputs, x[:200])
    expected = model.predict(x[:200], verbose=0)

    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    run = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_FGGP, str(path), str(outputs), str(inputs)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Skipping variable loading for optimizer" not in run.stderr  # no fggp optimizer slots saved
    zeros = json.loads(run.stdout.strip().splitlines()[-1])
    for name, mask in cb.masks.items():
        assert zeros[name] >= mask.size - int(mask.sum()), name
    np.testing.assert_array_equal(np.load(outputs), expected)

    fggp.keras.strip_pruning(model)  # nothing left to strip after a completed fit
    report = fggp.keras.sparsity_report(keras.saving.load_model(path))
    assert {n: r["zeros"] for n, r in report.items()} == {n: zeros[n] for n in report}


def test_config_round_trip_and_plain_state():
    start = F.SparseStart(0.5, "uniform", 7)
    cb = fggp.keras.PruningCallback(
        F.FGGP(0.3), models.schedule(), scope="layerwise", prunable=["a/kernel"], sparse_start=start,
        distribution="erk", skip_nonfinite=True,
    )
    config = cb.get_config()
    json.dumps(config)
    again = fggp.keras.PruningCallback.from_config(config)
    assert again.get_config() == config
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cb)).get_config() == config

    x, y = models.digits()
    model = models.compile(models.mlp())
    trained = fggp.keras.PruningCallback(F.Magnitude(), models.schedule(end=20, frequency=10))
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[trained], verbose=0)
    state = trained.state_dict()
    assert state["step"] == 29 and all(m.dtype == np.bool_ for m in state["masks"].values())
    assert {k: v for k, v in state.items() if k != "masks"} == json.loads(
        json.dumps({k: v for k, v in state.items() if k != "masks"})
    )
