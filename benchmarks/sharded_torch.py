"""An FGGP event on an FSDP2-sharded MLP at 2 and 4 ranks (gloo, CPU) against the same model
unsharded in one process: event time, peak memory growth per rank, and the collectives of
one event (how many, the largest, total bytes received per rank).

    python benchmarks/sharded_torch.py [--quick]     # writes benchmarks/results/sharded_torch.json

Each configuration runs in its own processes; the event is the selection (the core's
``Pruner.prune``) with this step's gradients, repeated from fresh masks, minimum of the
repeats. On this 2-core machine 4 ranks share 2 cores: their times show the cost of the
collectives and of oversubscription, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

import fggp.torch as ft
import fggp_core as F

WIDTH = 1024  # 4 Linear layers of WIDTH x WIDTH: ~4.2 M prunable weights
REPEATS = 3


def build(shard: bool) -> tuple[nn.Module, torch.optim.Optimizer, ft.TorchPruner]:
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(4)])
    if shard:
        from torch.distributed.fsdp import fully_shard

        for layer in net:
            fully_shard(layer)
        fully_shard(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    pruner = ft.attach(net, opt, F.FGGP(0.5), F.OneShotSchedule(0.9, step=1))
    net(torch.randn(64, WIDTH)).square().mean().backward()
    return net, opt, pruner


def measure(shard: bool) -> dict:
    _, _, pruner = build(shard)
    sizes: list[int] = []
    if shard:  # record what each collective of an event moves
        import torch.distributed as dist

        for name in ("all_reduce", "all_gather"):
            original = getattr(dist, name)

            def wrapped(tensor, *args, _original=original, **kwargs):
                parts = tensor if isinstance(tensor, list) else [tensor]
                sizes.append(sum(t.numel() * t.element_size() for t in parts))
                return _original(tensor, *args, **kwargs)

            setattr(dist, name, wrapped)
    core = pruner.core
    params, grads = pruner.params, {n: p.grad for n, p in pruner.params.items()}
    core.sync_step(1)
    times = []
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(REPEATS):
        core.init_masks(params)
        sizes.clear()
        start = time.perf_counter()
        core.prune(params, grads)
        times.append(time.perf_counter() - start)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    local_entries = sum(ft.sharding.local(p).numel() for p in params.values())
    return {
        "event_s": min(times),
        "event_s_all": times,
        "peak_growth_mib": growth / 1024,
        "local_entries": local_entries,
        "sparsity": core.sparsity(),
        "collectives": len(sizes),
        "largest_collective_bytes": max(sizes, default=0),
        "collective_bytes": sum(sizes),
    }


def worker(out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    result = measure(shard=True)
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, result)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(every))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 ranks only")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    torch.set_num_threads(1)  # each rank gets one thread, as torchrun gives them (OMP_NUM_THREADS=1)
    rows = {"unsharded": measure(shard=False)}
    root = Path(__file__).resolve().parents[1]
    for ranks in [2] if args.quick else [2, 4]:
        out = root / "benchmarks" / "results" / f".sharded_{ranks}.json"
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                        __file__, "--worker", str(out)], check=True, env=env, capture_output=True)
        rows[f"fsdp2 x{ranks}"] = json.loads(out.read_text())
        out.unlink()
    head = ("run", "rank", "event s", "peak +MiB", "entries", "coll.", "max B", "sum B")
    print("{:<12} {:>4} {:>8} {:>9} {:>9} {:>5} {:>7} {:>8}".format(*head))
    for run, result in rows.items():
        for rank, r in enumerate(result if isinstance(result, list) else [result]):
            moved = [r.get(key, 0) for key in ("collectives", "largest_collective_bytes", "collective_bytes")]
            print(f"{run:<12} {rank:>4} {r['event_s']:>8.3f} {r['peak_growth_mib']:>9.1f} {r['local_entries']:>9} "
                  "{:>5} {:>7} {:>8}".format(*moved))
    target = root / "benchmarks" / "results" / "sharded_torch.json"
    target.write_text(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
