"""``fggp inspect`` and ``fggp export``: tables of every readable checkpoint kind, exact export, one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import fggp
import fggp.torch
from fggp.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32))
    with torch.no_grad():
        model[0].weight[torch.rand(32, 64) < 0.95] = 0.0
    torch.save(model.state_dict(), folder / "m.pt")
    return folder, model


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_a_state_dict_shows_each_tensor_and_totals(checkpoint, capsys):
    folder, model = checkpoint
    code, out, _ = run(capsys, "inspect", folder / "m.pt")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["tensor", "kind", "dtype", "shape", "entries", "sparsity", "bytes"]
    weight = next(line.split() for line in lines if line.startswith("0.weight"))
    zeros = int((model[0].weight == 0).sum())
    assert weight[:5] == ["0.weight", "dense", "float32", "32x64", "2048"]
    assert weight[5] == f"{100 * zeros / 2048:.2f}" and weight[7] == "8192"
    assert any(line.startswith("total") for line in lines)
    code, out, _ = run(capsys, "inspect", folder / "m.pt", "--json")
    info = json.loads(out)
    assert info["format"] == "torch" and info["totals"]["tensors"] == len(model.state_dict())
    assert info["tensors"][0] == {"name": "0.weight", "kind": "dense", "dtype": "float32", "shape": [32, 64],
                                  "entries": 2048, "kept": 2048 - zeros, "sparsity": zeros / 2048,
                                  "stored_bytes": 8192}  # fmt: skip


def test_export_writes_the_exact_sparse_file_and_inspect_reads_it(checkpoint, capsys):
    folder, model = checkpoint
    code, out, _ = run(capsys, "export", folder / "m.pt", folder / "m.safetensors")
    assert code == 0 and out.startswith(f"wrote {folder / 'm.safetensors'}")
    loaded = fggp.torch.read_sparse(folder / "m.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded[name], tensor), name
    info = json.loads(run(capsys, "inspect", folder / "m.safetensors", "--json")[1])
    assert info["format"] == "fggp-sparse"
    weight = info["tensors"][0]
    assert weight["kind"] == "sparse" and weight["stored_bytes"] <= 2048 // 8 + weight["kept"] * 4
    assert info["file_bytes"] < 0.3 * (folder / "m.pt").stat().st_size


def test_npz_and_dense_safetensors_are_inspected_and_exported(tmp_path, capsys):
    arrays = {"w": np.where(np.arange(600).reshape(20, 30) % 10 == 0, 1.5, 0.0), "n": np.arange(4)}
    np.savez(tmp_path / "a.npz", **arrays)
    from safetensors.numpy import save_file

    save_file(arrays, tmp_path / "dense.safetensors")
    for name, format_ in (("a.npz", "npz"), ("dense.safetensors", "safetensors")):
        info = json.loads(run(capsys, "inspect", tmp_path / name, "--json")[1])
        sparsity = {t["name"]: t["sparsity"] for t in info["tensors"]}
        assert info["format"] == format_ and sparsity == {"w": 0.9, "n": 0.25}, name
    assert run(capsys, "export", tmp_path / "a.npz", tmp_path / "a.safetensors")[0] == 0
    loaded = fggp.load_sparse(tmp_path / "a.safetensors")
    assert all(np.array_equal(loaded[n], a) and loaded[n].dtype == a.dtype for n, a in arrays.items())


def test_a_keras_file_is_inspected_by_variable_path(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="hidden")], name="net")
    model.save(tmp_path / "net.keras")
    info = json.loads(run(capsys, "inspect", tmp_path / "net.keras", "--json")[1])
    assert info["format"] == "keras" and [t["name"] for t in info["tensors"]] == ["hidden/kernel", "hidden/bias"]


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("bad.pt", b"not a pickle", "cannot be read as a PyTorch state dict"),
        ("bad.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{", "truncated or corrupt"),
        ("bad.npz", b"PK nothing", "cannot be read as a NumPy .npz archive"),
        ("bad.keras", b"PK nothing", "cannot be loaded as a Keras model"),
        ("notes.txt", b"text", "unknown file type"),
        ("absent.pt", None, "no such file"),
    ],
)
def test_unreadable_files_are_refused_in_one_line(tmp_path, capsys, name, content, problem):
    if "keras" in name:
        pytest.importorskip("keras")
    if content is not None:
        (tmp_path / name).write_bytes(content)
    for command in (["inspect"], ["export"]):
        args = [*command, tmp_path / name] + ([tmp_path / "out.safetensors"] if command == ["export"] else [])
        code, out, err = run(capsys, *args)
        assert code == 2 and out == ""
        assert err.startswith(f"fggp: error: {tmp_path / name}: ") and problem in err and err.count("\n") == 1
    assert not (tmp_path / "out.safetensors").exists()


def test_the_command_exits_non_zero_without_a_traceback(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"junk")
    done = subprocess.run([sys.executable, "-m", "fggp.cli", "inspect", str(tmp_path / "bad.pt")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fggp: error: {tmp_path / 'bad.pt'}: cannot be read as a PyTorch")
