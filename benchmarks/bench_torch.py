"""fggp.torch on CPU: the cost of a training step between events, and the cost of an event.

1. Between events: a small CNN (MNIST-sized input, ~0.2 M prunable weights, 90 % pruned by an
   event before the timed steps), SGD with momentum. Three variants of the same step, timed in
   interleaved rounds in this run: dense (no pruning), ``fggp.torch.attach`` (gradients masked
   before, weights after each optimizer step) and ``torch.nn.utils.prune`` (its weight =
   weight_orig * mask reparametrisation, recomputed every forward). Reported: each variant's
   median per-step CPU time of this process; its ratio to dense as the median of per-round
   ratios (rounds are short and interleaved, so load from other processes hits all variants
   alike) and as the ratio of the fastest rounds; and the fggp hooks timed alone.
2. An event: global FGGP (rate 0.5) pruning 50 % of 10^6 and 10^7 prunable weights (4 Linear
   layers), selection on CPU with torch ops plus applying masks to weights and momentum; the
   same selection by ``fggp_core.select`` (NumPy) for reference. Best of ``--repeat``, in
   process CPU time.

    python benchmarks/bench_torch.py [--threads 1] [--rounds 60] [--sizes 1e6 1e7]
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


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def make_variants(sparsity: float) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    variants = {}
    for name in ("dense", "fggp.torch", "torch.nn.utils.prune"):
        model = small_cnn()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if name == "fggp.torch":
            pruner = attach(model, optimizer, F.Magnitude(), F.OneShotSchedule(sparsity, step=0))
            pruner.prune_now()  # the event; the timed steps are between events
        elif name == "torch.nn.utils.prune":
            torch_prune.global_unstructured(prunable(model), torch_prune.L1Unstructured, amount=sparsity)
        variants[name] = (model, optimizer)
    return variants


def step_times(model, optimizer, x, y, steps: int) -> float:
    """CPU seconds of this process per step (less disturbed than wall time by other processes)."""
    start = time.process_time()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.process_time() - start) / steps


def hook_seconds(optimizer, repeat: int = 300) -> float:
    """The fggp hooks alone, per step (pre + post, no event), called directly."""
    pre, post = (next(iter(hooks.values())) for hooks in (
        optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks))
    pruner = post.__self__
    step = pruner.core.step
    start = time.process_time()
    for _ in range(repeat):
        pre(optimizer, (), {})
        post(optimizer, (), {})
        pruner.core.step = step  # stay between events
    return (time.process_time() - start) / repeat


def between_events(rounds: int, steps: int, batch: int, sparsity: float = 0.9) -> dict:
    variants = make_variants(sparsity)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    for model, optimizer in variants.values():  # warm up
        step_times(model, optimizer, x, y, 5)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants)[r % 3 :] + list(variants)[: r % 3]  # each variant in each position
        for name in order:
            times[name].append(step_times(*variants[name], x, y, steps))
    n_prunable = sum(m.weight.numel() for m, _ in prunable(variants["dense"][0]))
    hooks = hook_seconds(variants["fggp.torch"][1])
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / d for a, d in zip(times[name], times["dense"])) for name in variants}
    best = {name: min(t) / min(times["dense"]) for name, t in times.items()}
    return {
        "model": f"small CNN, 28x28 input, batch {batch}, SGD momentum",
        "prunable_weights": n_prunable,
        "sparsity": sparsity,
        "rounds": rounds,
        "steps_per_round": steps,
        "step_ms": {name: round(1e3 * t, 4) for name, t in median.items()},
        "ratio_to_dense": {name: round(v, 4) for name, v in ratio.items()},
        "ratio_of_fastest_rounds": {name: round(v, 4) for name, v in best.items()},
        "fggp_hooks_ms_per_step": round(1e3 * hooks, 4),
        "fggp_hooks_fraction_of_dense_step": round(hooks / median["dense"], 4),
    }


def event_cost(n: int, repeat: int) -> dict:
    side = round(math.sqrt(n / 4))
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(side, side, bias=False) for _ in range(4)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
        optimizer.state[p]["momentum_buffer"] = torch.randn_like(p)
    saved = [p.detach().clone() for p in model.parameters()]
    n_real = sum(p.numel() for p in model.parameters())
    fggp_times = []
    for _ in range(repeat):
        with torch.no_grad():
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        pruner = attach(model, optimizer, F.FGGP(0.5), F.OneShotSchedule(0.5, step=0))
        start = time.process_time()
        report = pruner.prune_now()
        fggp_times.append(time.process_time() - start)
        pruner.remove()
        assert report.pruned == round(n_real * 0.5)
    weights = {str(i): s.numpy() for i, s in enumerate(saved)}
    grads = {str(i): p.grad.numpy() for i, p in enumerate(model.parameters())}
    masks = {n: (w == w) | True for n, w in weights.items()}
    core_times = []
    for _ in range(repeat):
        start = time.process_time()
        F.select(F.FGGP(0.5), weights, grads, masks, round(n_real * 0.5))
        core_times.append(time.process_time() - start)
    return {
        "prunable_weights": n_real,
        "k": round(n_real * 0.5),
        "event_s": round(min(fggp_times), 4),
        "core_numpy_select_s": round(min(core_times), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "torch.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    steps = between_events(args.rounds, args.steps, args.batch)
    print(f"Between events: {steps['model']}, {steps['prunable_weights']} prunable weights, "
          f"{steps['sparsity']:.0%} pruned, {args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'variant':<24}{'ms/step':>10}{'x dense':>10}{'x dense (fastest rounds)':>26}")
    for name, ms in steps["step_ms"].items():
        print(f"{name:<24}{ms:>10.3f}{steps['ratio_to_dense'][name]:>10.3f}"
              f"{steps['ratio_of_fastest_rounds'][name]:>26.3f}")
    print(f"fggp hooks alone: {steps['fggp_hooks_ms_per_step']:.3f} ms/step = "
          f"{steps['fggp_hooks_fraction_of_dense_step']:.1%} of a dense step")

    events = [event_cost(int(n), args.repeat) for n in args.sizes]
    print("\nOne event: global FGGP (rate 0.5), 50 % pruned, masks applied to weights and momentum")
    print(f"{'prunable weights':>18}{'event s':>10}{'core NumPy select s':>22}")
    for row in events:
        print(f"{row['prunable_weights']:>18}{row['event_s']:>10.3f}{row['core_numpy_select_s']:>22.3f}")

    result = {
        "benchmark": "fggp.torch on CPU: step overhead between events, cost of an event",
        "torch": torch.__version__,
        "threads": args.threads,
        "between_events": steps,
        "events": events,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
