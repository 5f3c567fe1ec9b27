"""The fggp command in subprocesses: exit codes, result files and their contents, resume, report."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields

import pytest

from fggp.cli.config import Settings
from fggp.cli.plots import PLOTS
from tests.cli.fakes import write_fake_cifar10, write_npz

# The smallest useful grid: LeNet-300-100 on digits, one epoch (22 optimizer steps), one thread.
TINY = ("--data", "digits", "--model", "mlp", "--epochs", "1", "--threads", "1")


def fggp(*args: object, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "fggp.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def results(folder) -> list[dict]:
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as file:
        return json.load(file)["runs"]


@pytest.fixture(scope="module")
def grid_folder(tmp_path_factory):
    """dense + fggp, gmp, global_mp at 90 and 95 %, seeds 0 and 1: 2 + 12 runs."""
    out = tmp_path_factory.mktemp("grid")
    done = fggp("run", *TINY, "--methods", "dense", "fggp", "gmp", "global_mp", "--sparsity", "0.9,0.95",
                "--seeds", "0", "1", "--out", out)  # fmt: skip
    return out, done


def test_help_explains_every_option_with_its_default():
    done = fggp("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for field in fields(Settings):
        option = {"sparsities": "--sparsity", "init_sparsities": "--init-sparsity"}.get(
            field.name, "--" + field.name.replace("_", "-")
        )
        assert option in text, option
    assert text.count("(default:") >= len(fields(Settings)) - 1
    for command in ("demo", "report"):
        assert fggp(command, "--help").returncode == 0


def test_run_writes_every_run_with_the_exact_sparsity(grid_folder):
    out, done = grid_folder
    assert done.returncode == 0, done.stderr
    runs = results(out)
    assert len(runs) == 14
    assert sorted({r["method"] for r in runs}) == ["dense", "fggp", "global_mp", "gmp"]
    for run in runs:
        assert 0.0 <= run["accuracy"] <= 1.0 and run["time_s"] > 0 and run["steps"] == 22
        if run["method"] == "dense":
            assert run["sparsity"] == 0.0 and run["pruned"] == 0
            continue
        assert run["pruned"] == round(run["sparsity_target"] * run["prunable"])
        assert run["sparsity"] == run["pruned"] / run["prunable"]
        assert run["zero_weights"] >= run["pruned"]  # pruned weights are exactly 0.0
        densities = [v["density"] for v in run["layers"].values()]
        assert len(densities) == 3 and min(densities) < 1.0


def test_every_run_records_its_multiply_accumulates(grid_folder):
    out, _ = grid_folder
    for run in results(out):
        assert run["dense_macs"] == 64 * 300 + 300 * 100 + 100 * 10  # LeNet-300-100 on 8x8 digits: one MAC a weight
        assert run["macs"] == run["dense_macs"] - run["pruned"]  # every weight prunable, none pruned costs a MAC
        assert sum(layer["macs"] for layer in run["layers"].values()) == run["macs"]
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| MACs % |" in table and "| 100.00 |" in table


def test_granet_and_the_authors_global_mp_rule_run_from_the_command_line(tmp_path):
    done = fggp("run", *TINY, "--methods", "granet", "global_mp_gupta", "annealed", "--sparsity", "0.9",
                "--seeds", "0", "--out", tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = {r["method"]: r for r in results(tmp_path)}
    assert sorted(runs) == ["annealed", "global_mp_gupta", "granet"]
    assert runs["granet"]["pruned"] == round(0.9 * runs["granet"]["prunable"])  # regrowth keeps counts exact
    gupta = runs["global_mp_gupta"]
    # the authors' per-layer int() may keep up to one more entry per layer than the exact count
    assert round(0.9 * gupta["prunable"]) - 3 < gupta["pruned"] <= round(0.9 * gupta["prunable"])
    assert gupta["trace"][1][0] == 11 and min(v["density"] for v in gupta["layers"].values()) > 0


def test_run_logs_one_line_per_run_and_prints_the_table(grid_folder):
    out, done = grid_folder
    lines = [line for line in done.stderr.splitlines() if line.startswith("run ")]
    assert len(lines) == 14 and lines[-1].startswith("run 14/14 ")
    assert "accuracy" in lines[0] and "sparsity reached" in lines[0]
    assert "±" in done.stdout and "Ranking per setting" in done.stdout
    for method in ("dense", "fggp", "gmp", "global_mp"):
        assert f" {method} " in done.stdout


def test_csv_and_plots_match_the_json(grid_folder):
    out, _ = grid_folder
    with open(os.path.join(out, "results.csv"), encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    runs = results(out)
    assert [(r["method"], float(r["accuracy"])) for r in rows] == [(r["method"], r["accuracy"]) for r in runs]
    for name in PLOTS:
        with open(os.path.join(out, name), "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text(encoding="utf-8")
    assert table.startswith("| data | model |") and table.count("±") == 7 and "Ranking per setting" in table
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_global_mp_prunes_once_then_fine_tunes(grid_folder):
    out, _ = grid_folder
    for run in results(out):
        if run["method"] == "global_mp":
            assert run["trace"] == [[0, 0.0], [11, run["sparsity"]], [22, run["sparsity"]]]
        if run["method"] == "fggp":
            steps = [step for step, _ in run["trace"]]
            assert len(steps) > 4 and steps == sorted(steps)


def test_worker_processes_give_the_same_runs_as_one_process(grid_folder, tmp_path):
    out, _ = grid_folder
    done = fggp("run", *TINY, "--methods", "fggp", "global_mp", "--sparsity", "0.9", "--seeds", "0", "1",
                "--workers", "2", "--out", tmp_path / "w")  # fmt: skip
    assert done.returncode == 0, done.stderr
    mine = {r["key"]: r for r in results(tmp_path / "w")}
    assert len(mine) == 4 and len([line for line in done.stderr.splitlines() if line.startswith("run ")]) == 4
    for run in results(out):
        if run["key"] in mine:  # each run is seeded on its own: where it ran does not matter
            assert (mine.pop(run["key"])["accuracy"], run["trace"]) == (run["accuracy"], run["trace"])
    assert not mine


def test_existing_results_need_resume_or_overwrite(grid_folder):
    out, _ = grid_folder
    done = fggp("run", *TINY, "--methods", "fggp", "--seeds", "0", "--out", out)
    assert done.returncode == 2 and "--resume" in done.stderr and "Traceback" not in done.stderr


def test_resume_refuses_results_made_with_other_settings(grid_folder):
    out, _ = grid_folder
    done = fggp("run", *TINY, "--epochs", "2", "--methods", "fggp", "--seeds", "0", "--out", out, "--resume")
    assert done.returncode == 2 and "epochs" in done.stderr


def test_report_merges_folders_and_ranks_methods(grid_folder, tmp_path):
    out, _ = grid_folder
    more = tmp_path / "more"
    done = fggp("run", *TINY, "--methods", "fggp", "gmp", "--sparsity", "0.9", "--seeds", "2", "--out", more)
    assert done.returncode == 0, done.stderr
    merged = tmp_path / "merged"
    done = fggp("report", out, more, "--out", merged)
    assert done.returncode == 0, done.stderr
    assert len(results(merged)) == 16
    assert "digits mlp 1 ep, dense start, 90% sparsity:" in done.stdout
    fggp_row = next(line for line in done.stdout.splitlines() if " 90 " in line and " fggp " in line)
    assert " 3 " in fggp_row  # seeds 0, 1 and 2 merged into one row
    for name in PLOTS:
        assert os.path.getsize(merged / name) > 1000
    empty = fggp("report", tmp_path / "nothing", "--out", tmp_path / "x")
    assert empty.returncode == 2 and "results.json" in empty.stderr


def test_killed_run_keeps_finished_runs_and_resume_completes_the_grid(tmp_path):
    out = tmp_path / "killed"
    args = ("run", *TINY, "--epochs", "2", "--methods", "fggp", "--sparsity", "0.9",
            "--seeds", *map(str, range(6)), "--out", out)  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fggp.cli", *map(str, args)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(out / "results.json") and len(results(out)) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = results(out)  # a complete, valid file whatever the moment of the kill
    assert 2 <= len(finished) < 6
    done = fggp(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("already in the results, skipped") == len(finished)
    final = results(out)
    assert sorted(r["seed"] for r in final) == list(range(6))
    assert final[: len(finished)] == finished


def _stat(pid: int | str) -> list[str] | None:
    """State, parent pid, ... of a live (non-zombie) process, from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return stat if stat[0] != "Z" else None


def _children(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and (_stat(e) or [None, None])[1] == str(pid)]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads child processes from /proc")
def test_worker_processes_stop_when_the_command_is_killed(tmp_path):
    out = tmp_path / "workers"
    args = ("run", *TINY, "--epochs", "3", "--methods", "fggp", "--sparsity", "0.9", "--seeds", *map(str, range(8)),
            "--workers", "2", "--out", out)  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "fggp.cli", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not os.path.exists(out / "results.json"):
        time.sleep(0.05)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert workers, "the grid should have started worker processes"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_stat(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _stat(w)], "worker processes outlived the killed command"


def test_fake_cifar10_folder_trains_the_cnn(tmp_path):
    folder = write_fake_cifar10(str(tmp_path / "cifar-10-batches-py"), per_batch=16)
    done = fggp("run", "--data", f"cifar10:{tmp_path}", "--model", "cnn", "--methods", "fggp", "--sparsity", "0.8",
                "--seeds", "0", "--epochs", "1", "--batch-size", "16", "--threads", "1", "--augment",
                "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = results(tmp_path / "out")
    assert run["data"] == f"cifar10:{tmp_path}" and run["steps"] == 5 and os.path.isdir(folder)
    assert run["pruned"] == round(0.8 * run["prunable"])
    assert not run["layers"]["features.0.weight"]["prunable"]  # the first convolution stays dense


def test_npz_images_in_channels_last_layout_train(tmp_path):
    path = write_npz(str(tmp_path / "mine.npz"), shape=(8, 8, 3))
    methods = ("--methods", "taylor", "random", "annealed", "--sparsity", "0.5")
    done = fggp("run", "--data", path, "--model", "cnn", *methods, "--seeds", "0", "--epochs", "1", "--threads", "1",
                "--out", tmp_path / "o")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {r["method"] for r in results(tmp_path / "o")} == {"taylor", "random", "annealed"}


def _bad_inputs(tmp):
    cifar_missing = write_fake_cifar10(str(tmp / "c1"), per_batch=2)
    os.remove(os.path.join(cifar_missing, "data_batch_3"))
    cifar_corrupt = write_fake_cifar10(str(tmp / "c2"), per_batch=2)
    with open(os.path.join(cifar_corrupt, "test_batch"), "wb") as file:
        file.write(b"not a pickle")
    garbage = tmp / "garbage.npz"
    garbage.write_bytes(b"\x00\x01 not a zip archive")
    config = tmp / "config.json"
    config.write_text(json.dumps({"epochs": 1, "learning_rate": 0.1}))
    return [
        (("--methods", "fggp", "magic"), "--methods='magic'"),
        (("--model", "alexnet"), "--model='alexnet'"),
        (("--sparsity", "1.0"), "--sparsity=1.0"),
        (("--sparsity", "-0.1"), "--sparsity=-0.1"),
        (("--init-sparsity", "0.95", "--sparsity", "0.9"), "--sparsity=0.9"),
        (("--data", "mnist"), "must be 'digits', 'cifar10:DIR'"),
        (("--data", str(tmp / "absent.npz")), "does not exist"),
        (("--data", write_npz(str(tmp / "no_y.npz"), y_test=None)), "['y_test']"),
        (("--data", write_npz(str(tmp / "float_y.npz"), y_train=[0.5] * 64)), "y_train"),
        (("--data", str(garbage)), "cannot read"),
        (("--data", f"cifar10:{cifar_missing}"), "data_batch_3"),
        (("--data", f"cifar10:{cifar_corrupt}"), "cannot read CIFAR-10 batch"),
        (("--data", f"cifar10:{tmp / 'nowhere'}"), "does not exist"),
        (("--data", write_npz(str(tmp / "flat.npz"), shape=(20,)), "--model", "cnn"), "--model='cnn'"),
        (("--config", str(config)), "learning_rate"),
        (("--config", str(tmp / "absent.json")), "--config="),
        (("--methods", "global_mp", "--min-keep", "5000"), "--min-keep=5000"),
    ]


def test_bad_input_exits_2_with_a_clear_message(tmp_path):
    for args, message in _bad_inputs(tmp_path):
        done = fggp("run", *TINY, "--seeds", "0", "--out", tmp_path / "out", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("fggp: error: ") and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "out")  # nothing was trained or written


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_cuda_is_an_error(tmp_path):
    done = fggp("run", *TINY, "--seeds", "0", "--device", "cuda", "--out", tmp_path / "o")
    assert done.returncode == 2 and "CUDA is not available" in done.stderr


def test_unparsable_option_values_exit_2():
    done = fggp("run", "--sparsity", "ninety")
    assert done.returncode == 2 and "--sparsity" in done.stderr
