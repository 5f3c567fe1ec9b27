"""FSDP2 / DTensor: each rank selects on its shards, the masks equal one process's bit for bit.

The multi-rank runs are ``torchrun`` processes (gloo on CPU) of tests/torch/fsdp_run.py; the
single-process reference runs here. Every rank trains on the same data, so FSDP2's averaged
gradients equal one process's gradients exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fggp.torch as ft
import fggp_core as F
from fggp_core.errors import ConfigError
from tests.torch import fsdp_run

dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch built without torch.distributed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CASES = ["fggp:global", "magnitude:global", "taylor:global", "globalmp:global", "random:global", "fggp:layerwise"]


def torchrun(tmp_path: Path, ranks: int, *args: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"out-{ranks}-{len(list(tmp_path.iterdir()))}.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
               "--standalone", str(ROOT / "tests/torch/fsdp_run.py"), str(out), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(np.load(out))


def check_same(got: dict[str, np.ndarray], case: str, expected: dict[str, np.ndarray]) -> None:
    for name, mask in expected.items():
        np.testing.assert_array_equal(got[f"{case}/{name}"], mask, err_msg=f"{case} {name}")


def test_fsdp2_masks_equal_one_process_for_every_method_and_scope(tmp_path):
    got = torchrun(tmp_path, 2, *CASES)
    for case in CASES:
        expected = fsdp_run.reference(case, weights=True)
        masks = [m for n, m in expected.items() if not n.startswith("weight:")]
        assert 0.8 < sum((~m).sum() for m in masks) / sum(m.size for m in masks)
        check_same(got, case, expected)  # masks and weights, bit for bit
        # weights, gradients and Adam moments of pruned entries are exactly 0.0 in every rank's shard
        assert got[f"{case}/zeros"]
        # ... with the pruned second moments lifted on each rank's shards during its CPU steps
        assert got[f"{case}/lifts"] > 0
        # no gathering: an event's collectives carry histograms of 2**11 counts or one count per tensor
        sizes = got[f"{case}/collectives"]
        assert sizes.size and sizes.max() <= 2048


def test_resume_across_world_sizes_with_distributed_checkpoint(tmp_path):
    cases = ["fggp:global", "globalmp:global", "taylor:layerwise"]
    torchrun(tmp_path, 2, *cases, "--save", str(tmp_path / "at2"), "--stop", "5")
    resumed_at_1 = torchrun(tmp_path, 1, *cases, "--load", str(tmp_path / "at2"))
    torchrun(tmp_path, 1, *cases, "--save", str(tmp_path / "at1"), "--stop", "7")
    resumed_at_2 = torchrun(tmp_path, 2, *cases, "--load", str(tmp_path / "at1"))
    for case in cases:
        expected = fsdp_run.reference(case)
        check_same(resumed_at_1, case, expected)
        check_same(resumed_at_2, case, expected)


@pytest.fixture
def one_rank():
    """A 1-rank gloo process group in this process (DTensors need one)."""
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield torch.distributed.device_mesh.init_device_mesh("cpu", (1,))
    dist.destroy_process_group()


def _distribute(model: nn.Module, mesh, placements) -> None:
    from torch.distributed.tensor import distribute_tensor

    for layer in model:
        if isinstance(layer, nn.Linear):
            layer.weight = nn.Parameter(distribute_tensor(layer.weight.detach(), mesh, placements))


def test_dtensor_parameters_shard0_and_replicate_are_pruned(one_rank):
    from torch.distributed.tensor import Replicate, Shard

    for placements in ([Shard(0)], [Replicate()]):
        net = fsdp_run.model()
        _distribute(net, one_rank, placements)
        opt = torch.optim.SGD([p for n, p in net.named_parameters() if n.endswith("weight")], lr=0.1)
        pruner = ft.attach(net, opt, F.Magnitude(), F.OneShotSchedule(0.5, step=1))
        from torch.distributed.tensor import distribute_tensor

        for group in opt.param_groups:  # gradients of the parameters' layout, as FSDP2 leaves them
            for p in group["params"]:
                p.grad = distribute_tensor(torch.randn(p.shape), one_rank, placements)
        opt.step()
        assert pruner.sharded and abs(pruner.sparsity() - 0.5) < 0.01
        mask = pruner.masks["0.weight"]
        assert tuple(mask.placements) == tuple(placements) and mask.full_tensor().shape == (33, 12)


def test_unsupported_layouts_are_refused_at_attach_naming_the_parameter(one_rank):
    from torch.distributed.tensor import Shard

    net = fsdp_run.model()
    _distribute(net, one_rank, [Shard(1)])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"prunable\['0.weight'\].*Shard\(dim=1\)"):
        ft.attach(net, opt, F.Magnitude(), fsdp_run.schedule())

    net = fsdp_run.model()
    _distribute(net[:1], one_rank, [Shard(0)])  # the first Linear only: DTensor mixed with regular tensors
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"prunable\['2.weight'\].*regular tensor"):
        ft.attach(net, opt, F.Magnitude(), fsdp_run.schedule())


@pytest.mark.filterwarnings("ignore:FSDP is switching:UserWarning")
def test_fsdp1_is_refused_pointing_to_fully_shard(one_rank):
    from torch.distributed.fsdp import FullyShardedDataParallel

    try:
        net = FullyShardedDataParallel(fsdp_run.model(), device_id=torch.device("cpu"), use_orig_params=True)
    except Exception as error:  # noqa: BLE001 - a torch without CPU FSDP1
        pytest.skip(f"FSDP1 does not wrap on CPU here: {error}")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="fully_shard"):
        ft.attach(net, opt, F.Magnitude(), fsdp_run.schedule())
