"""One training run: build the model, attach the pruner, train with SGD, evaluate, report.

The method names of the CLI map to the core's classes:

- ``fggp``: ``FGGP(rate)``; ``gmp``: ``Magnitude()``; ``gradient``, ``taylor``, ``random``;
- ``annealed``: GraNet's rate in the same framework, magnitude first then gradient,
  ``TwoStage("magnitude", "gradient", extra_fraction=CosineRate(0.5, 0.005, total_steps))``;
- ``granet``: GraNet itself, ``GraNet(total_steps)``: prune by magnitude, then regrow by gradient
  among the pruned entries at GraNet's cosine-decayed rate (0.5 to 0.005 over the run);

all with the cubic ``PolynomialSchedule(init_sparsity, sparsity, 0, end, every)`` where
``end = round(prune_until * total_steps)``; and

- ``global_mp``: Global MP with a minimum threshold, ``GlobalMP(min_keep)`` under global scope
  with ``OneShotSchedule(sparsity, step=round(one_shot_at * total_steps))``: dense training,
  one pruning event, fine-tuning with the masks kept for the rest of the run;
- ``global_mp_gupta``: the same with the authors' clamp-and-redistribute threshold rule,
  ``GlobalMP(min_keep, rule="gupta")``;
- ``dense``: no pruning.

A sparse start (``init_sparsity > 0``) draws a seeded ERK random mask before training. Every run
records the multiply-accumulates per test sample of its Conv/Linear layers, dense and pruned
(``fggp.torch.flops``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fggp_core import (
    FGGP,
    CosineRate,
    GlobalMP,
    Gradient,
    GraNet,
    Magnitude,
    Method,
    OneShotSchedule,
    PolynomialSchedule,
    Random,
    Schedule,
    SparseStart,
    Taylor,
    TwoStage,
)
from fggp_core.errors import ConfigError

from .config import RunSpec, Settings
from .data import Dataset
from .models import build_model, first_conv, prunable_names

__all__ = ["resolve_device", "pruning_plan", "check_plan", "run_experiment", "EVAL_BATCH"]

EVAL_BATCH = 1024
EpochCallback = Callable[[int, int, float], None]


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (an error when CUDA is absent) or ``auto`` (CUDA when present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", device, "CUDA is not available here (torch.cuda.is_available() is False)")
    return torch.device(device)


def _prunable(model: nn.Module, settings: Settings) -> list[str]:
    """The weights under pruning: every Conv2d/Linear weight, less the first conv when it stays dense."""
    names = prunable_names(model)
    if settings.dense_first_conv and first_conv(model) in names and len(names) > 1:
        names.remove(first_conv(model))
    return names


def _min_keep(settings: Settings) -> int | float:
    return int(settings.min_keep) if float(settings.min_keep).is_integer() else settings.min_keep


def check_plan(settings: Settings, data: Dataset) -> None:
    """Fail before any training when the grid cannot run: the model does not fit the data, or
    Global MP's minimum threshold (either rule) reserves more weights than a target sparsity keeps."""
    model = build_model(settings.model, data.input_shape, data.num_classes)
    if not GLOBAL_MP.keys() & set(settings.methods):
        return
    params = dict(model.named_parameters())
    sizes = [params[n].numel() for n in _prunable(model, settings)]
    total = sum(sizes)
    per_layer = GlobalMP(min_keep=_min_keep(settings)).reserve_count(total)
    reserved = sum(min(per_layer, size) for size in sizes)
    for sparsity in settings.sparsities:
        kept = total - round(total * sparsity)
        if reserved > kept:
            raise ConfigError(
                "--min-keep", settings.min_keep,
                f"reserves {reserved} weights ({per_layer} in each of {len(sizes)} layers), but {100 * sparsity:g}% "
                f"sparsity keeps only {kept} of {total}; lower --min-keep",
            )  # fmt: skip


GLOBAL_MP = {"global_mp": "reserve", "global_mp_gupta": "gupta"}  # CLI name -> GlobalMP(rule=)


def pruning_plan(settings: Settings, spec: RunSpec, total_steps: int) -> tuple[Method, Schedule, str]:
    """The core method, schedule and scope of ``spec`` for a run of ``total_steps`` optimizer steps."""
    if spec.method in GLOBAL_MP:
        step = min(total_steps, max(1, round(settings.one_shot_at * total_steps)))
        method = GlobalMP(min_keep=_min_keep(settings), rule=GLOBAL_MP[spec.method])
        return method, OneShotSchedule(spec.sparsity, step=step), "global"
    methods: dict[str, Callable[[], Method]] = {
        "fggp": lambda: FGGP(settings.rate),
        "gmp": Magnitude,
        "gradient": Gradient,
        "taylor": Taylor,
        "random": lambda: Random(seed=spec.seed),
        "annealed": lambda: TwoStage("magnitude", "gradient", extra_fraction=CosineRate(0.5, 0.005, total_steps)),
        "granet": lambda: GraNet(total_steps),
    }
    if spec.method not in methods:
        raise ConfigError("--methods", spec.method, f"must be one of {['dense', *GLOBAL_MP, *methods]}")
    end = min(total_steps, max(1, round(settings.prune_until * total_steps)))
    every = settings.prune_every or max(1, end // 20)
    schedule = PolynomialSchedule(spec.init_sparsity, spec.sparsity, 0, end, every, power=settings.power)
    return methods[spec.method](), schedule, settings.scope


def run_experiment(
    settings: Settings, spec: RunSpec, data: Dataset, device: torch.device, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """Train and evaluate one run; return its record (plain JSON-ready data).

    Record fields: ``accuracy`` (test top-1, fraction), ``sparsity`` (pruned fraction of the
    prunable weights reached), ``pruned``/``prunable`` (counts), ``time_s`` (wall seconds of
    training and evaluation), ``layers`` (per weight: size, density, prunable), ``trace``
    ([step, sparsity] at the start, at every event and at the end), ``steps``, ``loss``,
    ``dense_macs``/``macs`` (multiply-accumulates per test sample of the Conv/Linear layers, dense
    and with the pruned weights skipped; per layer in ``layers``).
    """
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)
    model = build_model(settings.model, data.input_shape, data.num_classes).to(device)
    names = _prunable(model, settings)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum,
        nesterov=settings.nesterov and settings.momentum > 0, weight_decay=settings.weight_decay,
    )  # fmt: skip
    steps_per_epoch = math.ceil(len(data.y_train) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    pruner, schedule = None, None
    if spec.method != "dense":
        import fggp.torch

        method, schedule, scope = pruning_plan(settings, spec, total_steps)
        start = SparseStart(spec.init_sparsity, "erk", spec.seed) if spec.init_sparsity > 0 else None
        pruner = fggp.torch.attach(model, optimizer, method, schedule, scope=scope, prunable=names, sparse_start=start)
    trace = [[0, pruner.sparsity() if pruner else 0.0]]
    began = time.perf_counter()
    loss = _train(settings, model, optimizer, data, device, spec.seed, total_steps, pruner, schedule, trace, on_epoch)
    accuracy = evaluate(model, data.x_test, data.y_test, device)
    elapsed = time.perf_counter() - began
    trace.append([total_steps, pruner.sparsity() if pruner else 0.0])
    return {
        "method": spec.method, "sparsity_target": spec.sparsity, "init_sparsity": spec.init_sparsity,
        "seed": spec.seed, "accuracy": accuracy, "loss": loss, "time_s": elapsed, "steps": total_steps,
        "device": str(device), **_sparsity_record(model, names, pruner, data), "trace": trace,
    }  # fmt: skip


def _train(settings, model, optimizer, data, device, seed, total_steps, pruner, schedule, trace, on_epoch) -> float:
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    x_train = torch.from_numpy(data.x_train).to(device)
    y_train = torch.from_numpy(data.y_train).to(device)
    milestones = [round(m * total_steps) for m in settings.lr_milestones]
    order = torch.Generator().manual_seed(seed)
    step, mean_loss = 0, 0.0
    for epoch in range(settings.epochs):
        model.train()
        loss_sum, batches = torch.zeros((), device=device), 0  # summed on device: no sync per step
        for index in torch.randperm(len(y_train), generator=order).split(settings.batch_size):
            index = index.to(device)
            x = augment(x_train[index]) if settings.augment else x_train[index]
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * settings.lr_gamma ** sum(step >= m for m in milestones)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y_train[index])
            loss.backward()
            optimizer.step()
            step += 1
            if pruner is not None and schedule.is_event(step):
                trace.append([step, pruner.sparsity()])
            loss_sum += loss.detach()
            batches += 1
        mean_loss = float(loss_sum) / max(1, batches)
        if on_epoch is not None:
            on_epoch(epoch + 1, settings.epochs, mean_loss)
    return mean_loss


def augment(x: torch.Tensor) -> torch.Tensor:
    """CIFAR augmentation on device: random 4-pixel-padded crop and horizontal flip, per sample."""
    n, c, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n, 1, 1, 1), device=x.device)
    dx = torch.randint(0, 9, (n, 1, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1) + dy
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w) + dx
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    cropped = padded[batch, channel, rows, cols]
    flip = torch.rand(n, 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, cropped.flip(3), cropped)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Top-1 accuracy (fraction in [0, 1]) in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(y), EVAL_BATCH):
        xb = torch.from_numpy(x[start : start + EVAL_BATCH]).to(device)
        yb = torch.from_numpy(y[start : start + EVAL_BATCH]).to(device)
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(y)


def _sparsity_record(model: nn.Module, names: list[str], pruner: Any, data: Dataset) -> dict[str, Any]:
    """Exact counts from the pruner, zeros counted in the weights, per-layer densities and MACs."""
    import fggp.torch

    params = dict(model.named_parameters())
    report = pruner.layer_report() if pruner is not None else {}
    flops = fggp.torch.flops(model, data.input_shape, pruner=pruner)
    layers = {
        n: {"size": p.numel(), "density": float(report[n]["density"]) if n in report else 1.0, "prunable": n in names}
        for n, p in params.items()
        if p.dim() >= 2
    }
    for name, layer in flops.layers.items():
        layers[name].update(dense_macs=layer.dense_macs, macs=layer.macs)
    return {
        "dense_macs": flops.dense_macs,
        "macs": flops.macs,
        "sparsity": float(pruner.sparsity()) if pruner is not None else 0.0,
        "pruned": sum(int(r["pruned"]) for r in report.values()),
        "prunable": sum(params[n].numel() for n in names),
        "zero_weights": sum(int((params[n] == 0).sum()) for n in report),
        "layers": layers,
    }
