"""How fast: fggp's Trainer and Lightning callbacks against the same run without fggp (CPU).

For each integration, the same tiny model is trained twice per round, without and with the
fggp callback, in interleaved rounds in this process (so load from other processes hits both
alike). Per run, a timing callback records every optimizer step's wall time (from the step's
begin hook to its end hook: forward, backward, optimizer step, fggp's hooks and events).
Reported per variant: the minimum over rounds of the median step time (between-event cost)
and of the mean step time (events included); the overhead ratio is with / without. Model
set-up, data loading and the Trainer's own start-up are outside the timed steps.

- transformers: tiny BERT (2 layers, hidden 64, sequence 32), batch 16, FGGP global, events
  every 10 steps to 80 % sparsity over 60 steps.
- Lightning: an MLP (784-256-256-10, 0.27 M weights), batch 64, the same schedule.

    python benchmarks/integrations.py [--rounds 5] [--steps 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

import fggp_core as F


def schedule(steps: int) -> F.PolynomialSchedule:
    return F.PolynomialSchedule(0.0, 0.8, 0, steps - 10, 10)


def summarise(times: list[list[float]]) -> dict[str, float]:
    return {
        "median_step_s": min(statistics.median(t) for t in times),
        "mean_step_s": min(statistics.fmean(t) for t in times),
    }


def bench_transformers(rounds: int, steps: int) -> dict:
    import transformers

    from fggp.transformers import PruningCallback

    class Timer(transformers.TrainerCallback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 500, (16 * steps, 32), generator=g)
    data = [{"input_ids": x, "labels": int(x[0] % 2)} for x in ids]

    def run(prune: bool) -> list[float]:
        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=128, max_position_embeddings=32)
        model = transformers.BertForSequenceClassification(config)
        timer = Timer()
        callbacks = [timer] + ([PruningCallback(F.FGGP(), schedule(steps))] if prune else [])
        with tempfile.TemporaryDirectory() as out:
            args = transformers.TrainingArguments(
                output_dir=out, per_device_train_batch_size=16, max_steps=steps, report_to="none", use_cpu=True,
                save_strategy="no", logging_steps=10, disable_tqdm=True, dataloader_num_workers=0,
            )
            transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks).train()
        return timer.times[1:]  # the first step warms up

    return paired(run, rounds)


def bench_lightning(rounds: int, steps: int) -> dict:
    import lightning.pytorch as L

    from fggp.lightning import PruningCallback

    class MLP(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                           torch.nn.ReLU(), torch.nn.Linear(256, 10))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    class Timer(L.Callback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64 * steps, 784, generator=g), torch.randint(0, 10, (64 * steps,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)

    def run(prune: bool, log: bool = True) -> list[float]:
        timer = Timer()
        pruning = PruningCallback(F.FGGP(), schedule(steps), log_name="sparsity" if log else None)
        callbacks = [timer] + ([pruning] if prune else [])
        with tempfile.TemporaryDirectory() as out:
            trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                                enable_model_summary=False, enable_checkpointing=False, default_root_dir=out,
                                callbacks=callbacks)
            trainer.fit(MLP(), loader)
        return timer.times[1:]

    result = paired(run, rounds)
    # The same with fggp but without logging sparsity every step (pl_module.log has a cost of its own).
    unlogged = summarise([run(True, log=False) for _ in range(rounds)])
    result["with_fggp_unlogged"] = unlogged
    result["ratio_between_events_unlogged"] = unlogged["median_step_s"] / result["without_fggp"]["median_step_s"]
    return result


def paired(run, rounds: int) -> dict:
    plain, pruned = [], []
    for _ in range(rounds):
        plain.append(run(False))
        pruned.append(run(True))
    a, b = summarise(plain), summarise(pruned)
    return {
        "without_fggp": a,
        "with_fggp": b,
        "ratio_between_events": b["median_step_s"] / a["median_step_s"],
        "ratio_with_events": b["mean_step_s"] / a["mean_step_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "integrations.json"))
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    results = {
        "threads": options.threads, "rounds": options.rounds, "steps": options.steps, "torch": torch.__version__,
        "transformers": bench_transformers(options.rounds, options.steps),
        "lightning": bench_lightning(options.rounds, options.steps),
    }
    Path(options.out).write_text(json.dumps(results, indent=2) + "\n")
    for name in ("transformers", "lightning"):
        r = results[name]
        print(f"{name}: step {r['without_fggp']['median_step_s'] * 1e3:.2f} ms without, "
              f"{r['with_fggp']['median_step_s'] * 1e3:.2f} ms with fggp (x{r['ratio_between_events']:.3f} between "
              f"events, x{r['ratio_with_events']:.3f} with events)")


if __name__ == "__main__":
    main()
