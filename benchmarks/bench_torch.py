"""fggp.torch: the cost of a training step between events, and the cost of an event.

1. Between events, for each model (a small CNN on 28x28 input, ~0.2 M prunable weights, batch
   32; an MLP 784-1024-1024-10, 1.86 M, batch 256) and optimizer (SGD momentum 0.9; AdamW, weight
   decay 0.01, CPU default and ``fused=True``), 90 % pruned by an event before the timed steps.
   Four variants of the same step, each its own model and optimizer, timed in interleaved
   rounds in this process (the order rotates each round): dense, a second dense copy (the
   control: an identical program, so its ratio to dense is this machine's noise floor for the
   figure, from memory placement and load), ``fggp.torch.attach``
   (gradients masked before each optimizer step; weights too only for optimizers that could
   move a zero) and ``torch.nn.utils.prune`` (weight =
   weight_orig * mask, recomputed every forward). Per variant: the median per-step CPU time of
   this process; the ratio to dense as the median of per-round ratios (rounds are short and
   interleaved, so load from other processes hits all variants alike), its spread (10th-90th
   percentile of the per-round ratios) and the ratio of the fastest rounds. Targets: fggp
   <= 1.02x dense and not above ``torch.nn.utils.prune``.
2. An event: global FGGP (rate 0.5) pruning 50 % of 10^6 and 10^7 prunable weights (4 Linear
   layers), the selection plus applying masks to weights, gradients and momentum, against
   ``fggp_core.select`` (NumPy) on the same values, alternating, best of ``--repeat`` (wall
   time). Target at 10^7: <= 1.3x the core. With CUDA: the event on the GPU at ``--cuda-sizes``
   (target at 10^8: < 100 ms).

    python benchmarks/bench_torch.py [--quick] [--threads 1] [--rounds 40] [--sizes 1e6 1e7]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import fggp_core as F
from fggp.torch import attach

OPTIMIZERS = {
    "SGD momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    "AdamW": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01),  # on CPU: the single-tensor loop
    "AdamW fused": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, fused=True),
}


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )


# builder, batch (the MLP of the Keras and JAX benchmarks)
MODELS = {"small CNN": (small_cnn, 32), "MLP 784-1024-1024-10": (mlp, 256)}


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def make_variants(build, make_opt, sparsity: float) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    variants = {}
    for name in ("dense", "dense copy", "fggp.torch", "torch.nn.utils.prune"):
        torch.manual_seed(0)
        model = build()
        optimizer = make_opt(model.parameters())
        if name == "fggp.torch":
            pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(sparsity, step=0))
            pruner.prune_now()  # the event; the timed steps are between events
        elif name == "torch.nn.utils.prune":
            torch_prune.global_unstructured(prunable(model), torch_prune.L1Unstructured, amount=sparsity)
        variants[name] = (model, optimizer)
    return variants


def step_time(model, optimizer, x, y, steps: int) -> float:
    """CPU seconds of this process per step (less disturbed than wall time by other processes)."""
    start = time.process_time()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.process_time() - start) / steps


def hook_seconds(optimizer, repeat: int = 200) -> float:
    """The fggp hooks alone (every pre- and post-step hook the pruner registered), per step, no event."""
    hooks = [*optimizer._optimizer_step_pre_hooks.values(), *optimizer._optimizer_step_post_hooks.values()]
    pruner = hooks[-1].__self__
    step = pruner.core.step
    start = time.process_time()
    for _ in range(repeat):
        for hook in hooks:
            hook(optimizer, (), {})
        pruner.core.step = step  # stay between events
    return (time.process_time() - start) / repeat


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def between_events(model_name: str, opt_name: str, rounds: int, steps: int, sparsity: float = 0.9) -> dict:
    build, batch = MODELS[model_name]
    variants = make_variants(build, OPTIMIZERS[opt_name], sparsity)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    for model, optimizer in variants.values():  # warm up
        step_time(model, optimizer, x, y, 3)
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each variant in each position
            times[name].append(step_time(*variants[name], x, y, steps))
    per_round = {n: [a / d for a, d in zip(times[n], times["dense"])] for n in names}
    hooks = hook_seconds(variants["fggp.torch"][1])
    dense = statistics.median(times["dense"])
    return {
        "model": model_name,
        "optimizer": opt_name,
        "batch": batch,
        "prunable_weights": sum(m.weight.numel() for m, _ in prunable(variants["dense"][0])),
        "sparsity": sparsity,
        "rounds": rounds,
        "steps_per_round": steps,
        "step_ms": {n: round(1e3 * statistics.median(t), 4) for n, t in times.items()},
        "ratio_to_dense": {n: round(statistics.median(r), 4) for n, r in per_round.items()},
        "ratio_p10_p90": {n: [round(quantile(r, 0.1), 4), round(quantile(r, 0.9), 4)] for n, r in per_round.items()},
        "ratio_of_fastest_rounds": {n: round(min(t) / min(times["dense"]), 4) for n, t in times.items()},
        "fggp_hooks_ms_per_step": round(1e3 * hooks, 4),
        "fggp_hooks_fraction_of_dense_step": round(hooks / dense, 4),
    }


def linear_stack(n: int, device: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    side = round(math.sqrt(n / 4))
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(side, side, bias=False) for _ in range(4)]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
        optimizer.state[p]["momentum_buffer"] = torch.randn_like(p)
    return model, optimizer


def event_cost(n: int, repeat: int, device: str = "cpu", core: bool = True) -> dict:
    """One event through ``attach(...).prune_now()`` (selection + masks applied), and the core's selection."""
    model, optimizer = linear_stack(n, device)
    saved = [p.detach().clone() for p in model.parameters()]
    n_real = sum(p.numel() for p in model.parameters())
    weights = {str(i): s.cpu().numpy() for i, s in enumerate(saved)}
    grads = {str(i): p.grad.cpu().numpy() for i, p in enumerate(model.parameters())}
    masks = {name: (w == w) | True for name, w in weights.items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fggp_times, core_times = [], []
    for _ in range(repeat):  # alternating, so load changes hit both alike
        with torch.no_grad():
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        pruner = attach(model, optimizer, F.FGGP(0.5), F.OneShotSchedule(0.5, step=0))
        sync()
        start = time.perf_counter()
        report = pruner.prune_now()
        sync()
        fggp_times.append(time.perf_counter() - start)
        pruner.remove()
        assert report.pruned == round(n_real * 0.5)
        if core:
            start = time.perf_counter()
            F.select(F.FGGP(0.5), weights, grads, masks, round(n_real * 0.5))
            core_times.append(time.perf_counter() - start)
    row = {"device": device, "prunable_weights": n_real, "k": round(n_real * 0.5), "event_s": round(min(fggp_times), 4)}
    if core:
        row["core_numpy_select_s"] = round(min(core_times), 4)
        row["ratio_to_core"] = round(min(fggp_times) / min(core_times), 3)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=None, help="default 40, 12 with --quick")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--cuda-sizes", type=float, nargs="+", default=[1e7, 1e8])
    parser.add_argument("--repeat", type=int, default=None, help="default 5, 3 with --quick")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "torch.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (12 if args.quick else 40)
    repeat = args.repeat or (3 if args.quick else 5)

    steps = [between_events(m, o, rounds, args.steps) for m in MODELS for o in OPTIMIZERS]
    print(f"Between events ({args.threads} thread(s), {rounds} rounds): x dense, median [p10, p90] (fastest rounds)")
    for row in steps:
        cells = "  ".join(
            f"{n} {row['ratio_to_dense'][n]:.3f} [{row['ratio_p10_p90'][n][0]:.3f}, {row['ratio_p10_p90'][n][1]:.3f}]"
            f" ({row['ratio_of_fastest_rounds'][n]:.3f})" for n in ("dense copy", "fggp.torch", "torch.nn.utils.prune")
        )
        print(f"  {row['model']}, {row['optimizer']}: dense {row['step_ms']['dense']:.2f} ms/step; {cells}")

    events = [event_cost(int(n), repeat) for n in args.sizes]
    if torch.cuda.is_available():
        events += [event_cost(int(n), repeat, "cuda", core=False) for n in args.cuda_sizes]
    print("One event: global FGGP (rate 0.5), 50 % pruned, masks applied to weights, gradients and momentum")
    for row in events:
        core = ""
        if "ratio_to_core" in row:
            core = f", core {row['core_numpy_select_s']:.3f} s, x{row['ratio_to_core']:.2f}"
        print(f"  {row['device']} {row['prunable_weights']:>11,}: {row['event_s']:.3f} s{core}")

    result = {
        "benchmark": "fggp.torch: step overhead between events, cost of an event",
        "torch": torch.__version__,
        "threads": args.threads,
        "quick": args.quick,
        "between_events": steps,
        "events": events,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return result


if __name__ == "__main__":
    main()
