"""The parts behind the command: settings, pruning plans, models, atomic files, tables, progress."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch

from fggp.cli.config import RunSpec, Settings, grid, load_config
from fggp.cli.data import Dataset
from fggp.cli.experiment import augment, check_plan, pruning_plan, resolve_device
from fggp.cli.main import DEMO, settings_from
from fggp.cli.models import build_model, first_conv, prunable_names
from fggp.cli.progress import Progress
from fggp.cli.report import Row, format_ranking, ranking
from fggp.cli.results import ResultStore, write_atomic
from fggp_core import FGGP, CosineRate, GlobalMP, OneShotSchedule, PolynomialSchedule, TwoStage
from fggp_core.errors import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs")


@pytest.mark.parametrize("model", ["vgg19", "resnet50"])
def test_paper_configs_follow_the_protocol(model):
    settings = Settings(**load_config(os.path.join(CONFIGS, f"paper_cifar10_{model}.json"))).validate()
    assert settings.model == model and settings.epochs == 160 and settings.batch_size == 64
    assert (settings.lr, settings.momentum, settings.nesterov, settings.weight_decay) == (0.1, 0.9, True, 5e-4)
    assert settings.lr_milestones == [0.5, 0.75] and settings.lr_gamma == 0.1 and settings.label_smoothing == 0.1
    assert (settings.prune_every, settings.prune_until, settings.power, settings.rate) == (2000, 0.8, 3, 0.5)
    assert settings.dense_first_conv and settings.sparsities == [0.9, 0.95, 0.98]
    assert settings.init_sparsities == [0.0, 0.5] and settings.device == "cuda"
    cifar = Dataset("c", *(np.zeros(s, np.float32) for s in ((1, 3, 32, 32),)), np.zeros(1, np.int64),
                    np.zeros((1, 3, 32, 32), np.float32), np.zeros(1, np.int64), 10)  # fmt: skip
    check_plan(settings, cifar)  # global_mp's min_keep fits every target


def test_demo_is_the_issue_grid():
    settings = Settings(**DEMO).validate()
    assert settings.data == "digits" and settings.model == "cnn" and len(settings.seeds) >= 3
    assert settings.methods == ["dense", "fggp", "gmp", "global_mp"] and settings.sparsities == [0.9, 0.95, 0.98]
    runs = grid(settings)
    assert len(runs) == len(settings.seeds) * (1 + 3 * 3) and runs[0].method == "dense"


def test_options_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_comment": "x", "epochs": 7, "lr": 0.2, "methods": ["gmp"]}))
    args = type("Args", (), {"config": str(path), "epochs": 3, "methods": [["fggp"], ["gmp", "random"]]})()
    settings = settings_from(args, {})
    assert (settings.epochs, settings.lr, settings.methods) == (3, 0.2, ["fggp", "gmp", "random"])


def test_pruning_plans_use_the_core_classes():
    settings = Settings(rate=0.3, prune_every=5, min_keep=10)
    method, schedule, scope = pruning_plan(settings, RunSpec("fggp", 0.9, 0.5, 0), total_steps=100)
    assert method == FGGP(0.3) and schedule == PolynomialSchedule(0.5, 0.9, 0, 80, 5, power=3.0) and scope == "global"
    method, schedule, scope = pruning_plan(settings, RunSpec("global_mp", 0.95, 0.0, 0), total_steps=100)
    assert method == GlobalMP(min_keep=10) and schedule == OneShotSchedule(0.95, step=50) and scope == "global"
    method, _, _ = pruning_plan(settings, RunSpec("annealed", 0.9, 0.0, 0), total_steps=100)
    assert method == TwoStage("magnitude", "gradient", extra_fraction=CosineRate(0.5, 0.005, 100))
    _, schedule, _ = pruning_plan(Settings(), RunSpec("gmp", 0.9, 0.0, 0), total_steps=1000)
    assert schedule.frequency == 40 and schedule.end_step == 800  # default: 20 events over the pruning span


def test_cuda_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize(("name", "weights", "layers"), [("vgg19", 20.02e6, 17), ("resnet50", 23.47e6, 54)])
def test_cifar_models_have_the_papers_size(name, weights, layers):
    model = build_model(name, (3, 32, 32), 10)
    names = prunable_names(model)
    params = dict(model.named_parameters())
    assert len(names) == layers and first_conv(model) == names[0]
    assert abs(sum(params[n].numel() for n in names) - weights) / weights < 0.002
    assert all(params[n].dim() in (2, 4) for n in names)


def test_small_models_run_forward():
    x = torch.zeros(2, 1, 8, 8)
    assert build_model("cnn", (1, 8, 8), 10)(x).shape == (2, 10)
    assert build_model("mlp", (1, 8, 8), 10)(x).shape == (2, 10)
    with pytest.raises(ConfigError, match="32x32"):
        build_model("vgg19", (1, 8, 8), 10)


def test_augment_crops_and_flips_without_changing_shape():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    y = augment(x)
    assert y.shape == x.shape
    nonzero = y[y != 0]
    assert set(nonzero.tolist()) <= set(x.flatten().tolist())


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_atomic(str(path), "old")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(path), "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_result_store_resumes_only_matching_settings(tmp_path):
    store = ResultStore(str(tmp_path), Settings(epochs=2))
    spec = RunSpec("fggp", 0.9, 0.0, 0)
    store.add(spec, {"method": "fggp", "accuracy": 0.5})
    assert ResultStore(str(tmp_path), Settings(epochs=2), resume=True).done(spec)
    assert ResultStore(str(tmp_path), Settings(epochs=2, seeds=[5], device="auto"), resume=True).done(spec)
    with pytest.raises(ConfigError, match="epochs"):
        ResultStore(str(tmp_path), Settings(epochs=3), resume=True)
    with pytest.raises(ConfigError, match="--resume"):
        ResultStore(str(tmp_path), Settings(epochs=2))
    assert not ResultStore(str(tmp_path), Settings(epochs=2), overwrite=True).runs


def _row(method, mean, std, n=3, target=0.9):
    return Row("digits", "cnn", 12, 0.0, target, method, n, mean, std, target, target, 1.0)


def test_ranking_flags_methods_within_two_standard_errors():
    rows = [_row("fggp", 0.95, 0.01), _row("gmp", 0.94, 0.01), _row("global_mp", 0.90, 0.01), _row("dense", 0.98, 0)]
    (ranked,) = ranking(rows).values()
    assert [(r.method, near) for r, near in ranked] == [("fggp", True), ("gmp", True), ("global_mp", False)]
    assert "fggp 95.00 ≈ gmp 94.00  >  global_mp 90.00" in format_ranking(rows)


def test_progress_bars_on_a_terminal_and_lines_otherwise():
    spec = RunSpec("fggp", 0.9, 0.5, 1)
    record = {"accuracy": 0.9, "sparsity": 0.9, "time_s": 1.0}
    for interactive in (True, False):
        stream = io.StringIO()
        progress = Progress(2, stream=stream, interactive=interactive)
        progress.start(spec, 3)
        for epoch in (1, 2, 3):
            progress.epoch(epoch, 3, 0.5)
        progress.finish(spec, record)
        progress.skip(RunSpec("dense", 0.0, 0.0, 0))
        progress.close()
        text = stream.getvalue()
        assert "run 1/2 fggp 90%, 50% ERK start, seed 1: accuracy 90.00%" in text
        assert "run 2/2 dense, dense start, seed 0: already in the results, skipped" in text
        assert ("epochs" in text) == interactive  # the tqdm bars only on a terminal
