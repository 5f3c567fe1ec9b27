"""Small data sets made on the fly: a fake CIFAR-10 folder and user .npz files."""

from __future__ import annotations

import os
import pickle

import numpy as np

from fggp.cli.data import CIFAR10_FILES


def write_fake_cifar10(folder: str, per_batch: int = 20, seed: int = 0) -> str:
    """The six CIFAR-10 python pickles (``data``: N x 3072 uint8, ``labels``), with byte keys as the real ones."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for name in CIFAR10_FILES:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        with open(os.path.join(folder, name), "wb") as file:
            pickle.dump(batch, file)
    return folder


def write_npz(path: str, n_train: int = 64, n_test: int = 32, shape: tuple[int, ...] = (8, 8), **override) -> str:
    """A learnable 4-class problem: the class sets the mean of the image. ``override`` replaces or drops keys."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 4, n)
        x = rng.normal(size=(n, *shape)).astype(np.float32) + y.reshape(-1, *[1] * len(shape))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    for key, value in override.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path
