"""fggp.torch.save_sparse / load_sparse: exact round trips of pruned models; refused files change nothing;
fggp.torch.to_sparse_linear: CSR layers give the dense outputs and are used only where measured faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fggp
import fggp_core as F
from fggp.torch import SparseLinear, attach, finalize, load_sparse, read_sparse, save_sparse, to_sparse_linear
from fggp_core.errors import InputMismatchError
from fggp_core.sparse_file import SparseFileError
from tests.torch.training import tiny_cnn, train_step


def assert_bitwise_equal(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and sa[name].shape == sb[name].shape, name
        assert torch.equal(sa[name].view(-1).view(torch.uint8), sb[name].view(-1).view(torch.uint8)), name


def test_a_model_pruned_with_attach_round_trips_bitwise_and_its_masks_too(tmp_path):
    model = tiny_cnn(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(0.9, step=2))
    for step in range(4):
        train_step(model, optimizer, step, image=True)
    path = tmp_path / "model.safetensors"
    records = save_sparse(model, path, sparse=pruner)  # the pruner's masks, before finalize
    finalize(model)
    assert {r.name for r in records if r.kind == "sparse"} == set(pruner.masks)
    fresh = tiny_cnn(1)
    assert load_sparse(fresh, path) is fresh
    assert_bitwise_equal(fresh, model)
    _, masks = fggp.load_sparse(path, with_masks=True)
    for name, mask in pruner.masks.items():
        np.testing.assert_array_equal(masks[name], mask.cpu().numpy())
    x = torch.randn(2, 1, 8, 8)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_any_model_with_zeros_round_trips_in_its_dtype_with_signed_zeros(tmp_path, dtype):
    model = nn.Sequential(nn.Linear(40, 30), nn.BatchNorm1d(30)).to(dtype)
    with torch.no_grad():
        weight = model[0].weight
        weight[torch.rand(weight.shape) < 0.9] = 0.0
        weight[0, :3] = torch.tensor([-0.0, float("nan"), float("-inf")], dtype=dtype)
    records = save_sparse(model.state_dict(), tmp_path / "m.safetensors")
    assert {r.name: r.kind for r in records}["0.weight"] == "sparse"
    assert {r.name: r.dtype for r in records}["0.weight"] == str(dtype).removeprefix("torch.")
    fresh = nn.Sequential(nn.Linear(40, 30), nn.BatchNorm1d(30)).to(dtype)
    load_sparse(fresh, tmp_path / "m.safetensors")
    assert_bitwise_equal(fresh, model)
    assert read_sparse(tmp_path / "m.safetensors")["1.num_batches_tracked"].dtype == torch.int64


def test_a_refused_file_leaves_the_model_unchanged(tmp_path):
    saved, other = tiny_cnn(0), tiny_cnn(1)
    before = {n: t.clone() for n, t in other.state_dict().items()}
    state = saved.state_dict()
    state["6.weight"] = torch.zeros(3, 17)  # the last tensor has the wrong shape
    save_sparse(state, tmp_path / "bad_shape.safetensors")
    with pytest.raises(InputMismatchError, match="6.weight"):
        load_sparse(other, tmp_path / "bad_shape.safetensors")
    del state["6.weight"]
    save_sparse(state, tmp_path / "missing.safetensors")
    with pytest.raises(InputMismatchError, match="missing \\['6.weight'\\]"):
        load_sparse(other, tmp_path / "missing.safetensors")
    data = (tmp_path / "missing.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-4])
    with pytest.raises(SparseFileError, match="cut.safetensors"):
        load_sparse(other, tmp_path / "cut.safetensors")
    for name, tensor in other.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    load_sparse(other, tmp_path / "missing.safetensors", strict=False)
    assert torch.equal(other.state_dict()["4.weight"], saved.state_dict()["4.weight"])


def _pruned_mlp(sparsity: float, width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, 10)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight[torch.rand(layer.weight.shape) < sparsity] = 0.0
    return model


def test_sparse_linear_gives_the_dense_outputs():
    model = _pruned_mlp(0.9)
    x = torch.randn(5, 3, 32)
    expected = model(x)
    report = to_sparse_linear(model, min_sparsity=0.5, only_if_faster=False)
    assert all(r["converted"] for r in report.values()) and len(report) == 2
    assert isinstance(model[0], SparseLinear) and model[0].weight.layout == torch.sparse_csr
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


def test_layers_without_a_csr_kernel_stay_dense(monkeypatch):
    def unsupported(self, x):  # as torch 2.13 answers a bfloat16 CSR product on CPU
        raise RuntimeError('"addmm_out_sparse_csr_impl_mkl" not implemented for \'BFloat16\'')

    monkeypatch.setattr(SparseLinear, "forward", unsupported)
    model = _pruned_mlp(0.95)
    report = to_sparse_linear(model, torch.randn(2, 32))
    assert [r["converted"] for r in report.values()] == [False, False]
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))


def test_only_layers_measured_faster_are_converted(monkeypatch):
    import fggp.torch.sparse_linear as module

    model = _pruned_mlp(0.95)
    dense_first = _pruned_mlp(0.3)  # below min_sparsity: never a candidate
    assert to_sparse_linear(dense_first, torch.randn(1, 32), min_sparsity=0.5) == {}
    timings = iter([1.0, 2.0] * 2 + [2.0, 1.0] * 2)  # layer "0": dense faster; layer "2": sparse faster
    monkeypatch.setattr(module, "_time", lambda *args: next(timings))
    report = to_sparse_linear(model, torch.randn(1, 32), min_sparsity=0.9)
    assert [r["converted"] for r in report.values()] == [False, True]
    assert type(model[0]) is nn.Linear and isinstance(model[2], SparseLinear)
