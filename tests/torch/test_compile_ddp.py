"""torch.compile'd models and DistributedDataParallel (2 gloo processes on CPU)."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import fggp_core as F
from fggp.torch import attach, finalize
from tests.torch.training import EventRecorder, assert_pruned_entries_zero, batch, tiny_mlp, train_step

SCHEDULE = F.PolynomialSchedule(0.0, 0.8, begin_step=1, end_step=7, frequency=3)  # events 1, 4, 7


def test_compiled_model_is_pruned_like_an_eager_one():
    model = tiny_mlp()
    compiled = torch.compile(model)
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.05, momentum=0.9)
    recorder = EventRecorder(optimizer)
    pruner = recorder.attach(attach(compiled, optimizer, F.FGGP(), SCHEDULE))
    assert list(pruner.masks) == ["_orig_mod.0.weight", "_orig_mod.2.weight"]
    for step in range(1, 9):
        train_step(compiled, optimizer, step, image=False)
    recorder.check()
    assert [e.step for e in recorder.events] == [1, 4, 7]
    assert_pruned_entries_zero(pruner, optimizer)
    x, _ = batch(0, image=False)
    with torch.no_grad():
        # the compiled graph reads the masked weights; inductor's kernels (e.g. its vectorised tanh) may
        # differ from eager by an ulp even without pruning, so equal up to rounding (80 % pruned is far)
        torch.testing.assert_close(compiled(x), model(x))
    assert finalize(compiled) is compiled and not pruner.attached


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(tiny_mlp(seed=rank))  # rank 0's weights are broadcast
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        recorder = EventRecorder(optimizer)
        pruner = recorder.attach(attach(model, optimizer, F.FGGP(0.5), SCHEDULE, sparse_start=F.SparseStart(0.3)))
        for step in range(1, 9):
            optimizer.zero_grad()
            x, y = batch(10 * step + rank, image=False)  # each rank its own shard
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        recorder.check()
        assert_pruned_entries_zero(pruner, optimizer)
        masks = [{"step": e.step, **e.after} for e in recorder.events]
        torch.save(masks, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_masks_are_identical_on_every_rank_at_every_event(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [e["step"] for e in ranks[0]] == [e["step"] for e in ranks[1]] == [1, 4, 7]
    for event0, event1 in zip(*ranks):
        for name in ("module.0.weight", "module.2.weight"):
            np.testing.assert_array_equal(event0[name], event1[name], err_msg=f"step {event0['step']} {name}")
    final = ranks[0][-1]
    assert sum(int((~final[n]).sum()) for n in ("module.0.weight", "module.2.weight")) == round(144 * 0.8)
