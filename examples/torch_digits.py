"""Prune a small PyTorch CNN on sklearn's digits to 90 % sparsity with FGGP, then save it plain.

    python examples/torch_digits.py

Trains 12 epochs of SGD with Nesterov momentum (about 270 optimizer steps); pruning events
every 15 steps from step 15 to step 180 on the cubic schedule. One line, ``fggp.torch.attach``,
adds pruning; the training loop is the ordinary one. Checkpoints the pruner with the model,
finalizes (a plain model, nothing of fggp attached), saves and reloads it with plain torch.
Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import io

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import fggp
import fggp.torch


def data() -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    return torch.from_numpy(x_train), torch.from_numpy(x_test), torch.from_numpy(y_train), torch.from_numpy(y_test)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        result = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return result


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_train, x_test, y_train, y_test = data()
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = fggp.PolynomialSchedule(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=180,
                                       frequency=15)
    pruner = fggp.torch.attach(model, optimizer, fggp.FGGP(rate=0.5), schedule)  # Conv and Linear weights

    for epoch in range(12):
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()  # the pruner's hooks run here; an event prunes after the step
            event = pruner.last_event
            if event is not None and event.step == pruner.step:
                print(f"step {event.step:4d}: target sparsity {event.target_sparsity:.3f}, "
                      f"pruned {event.pruned}/{event.total}")
        if epoch == 5:  # a checkpoint: model, optimizer and pruner, loadable with weights_only=True
            checkpoint = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "pruner": pruner.state_dict()}, checkpoint)
            print(f"checkpoint at step {pruner.step}: {checkpoint.tell() / 1024:.0f} KiB")

    for name, row in pruner.layer_report().items():
        print(f"{name:10s} density {row['density']:.3f} ({row['size'] - row['pruned']}/{row['size']} kept)")
    print(f"sparsity {pruner.sparsity():.4f}, test accuracy {accuracy(model, x_test, y_test):.3f}")

    plain = fggp.torch.finalize(model)  # hooks removed; pruned weights are exact zeros
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=False)  # a plain nn.Sequential: fggp is not needed
    zeros = {n: int((p == 0).sum()) for n, p in reloaded.named_parameters() if n.endswith("weight")}
    same = torch.equal(reloaded(x_test), plain(x_test))
    print(f"reloaded: identical predictions {same}, zero weights per layer {zeros}")


if __name__ == "__main__":
    main()
