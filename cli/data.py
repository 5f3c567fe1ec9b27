"""Data sets for ``fggp run``: the embedded digits, a local CIFAR-10 folder, or a user's ``.npz``.

``--data`` is one of

- ``digits``: scikit-learn's 8x8 handwritten digits (shipped in its wheel), as 1x8x8 images,
  split 75/25 stratified with a fixed seed (the split does not depend on the run's seed);
- ``cifar10:DIR``: the standard CIFAR-10 python batches (``data_batch_1`` .. ``data_batch_5``
  and ``test_batch``) in ``DIR`` or in ``DIR/cifar-10-batches-py``;
- ``PATH.npz``: arrays ``x_train, y_train, x_test, y_test``; images as N x C x H x W,
  N x H x W x C (C in 1, 3, 4, detected from the shape) or N x H x W (one channel), or flat
  features N x D (for ``--model mlp`` only); labels integers 0 .. classes - 1.

Inputs are returned as float32 standardised per channel with the training set's mean and std.
Every problem raises ``DataError`` naming the file, key or shape at fault.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np

from fggp_core.errors import ConfigError

__all__ = ["Dataset", "DataError", "load_data", "CIFAR10_FILES", "NPZ_KEYS"]

CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ConfigError):
    """The data set named by ``--data`` is missing, unreadable or malformed."""

    def __init__(self, value: str, problem: str) -> None:
        super().__init__("--data", value, problem)


@dataclass(frozen=True)
class Dataset:
    """Standardised arrays. ``x_*``: float32, N x C x H x W (or N x D); ``y_*``: int64 in [0, classes)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_data(spec: str) -> Dataset:
    """Load the data set named by ``spec`` (see the module docstring)."""
    if spec == "digits":
        return _standardise(spec, *_digits())
    if spec.startswith("cifar10:"):
        return _standardise(spec, *_cifar10(spec, spec[len("cifar10:") :]))
    if spec.endswith(".npz"):
        return _standardise(spec, *_npz(spec))
    raise DataError(spec, "must be 'digits', 'cifar10:DIR' or a path ending in .npz")


def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None, :, :] / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_train, y_train, x_test, y_test


def _cifar10(spec: str, folder: str) -> tuple[np.ndarray, ...]:
    if not folder:
        raise DataError(spec, "cifar10: needs a folder, e.g. cifar10:./cifar-10-batches-py")
    if not os.path.isdir(folder):
        raise DataError(spec, f"folder {folder!r} does not exist")
    nested = os.path.join(folder, "cifar-10-batches-py")
    if not os.path.exists(os.path.join(folder, CIFAR10_FILES[0])) and os.path.isdir(nested):
        folder = nested
    missing = [f for f in CIFAR10_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise DataError(spec, f"folder {folder!r} lacks the CIFAR-10 python batches {missing}")
    parts = [_cifar10_batch(spec, os.path.join(folder, f)) for f in CIFAR10_FILES]
    x_train = np.concatenate([x for x, _ in parts[:5]])
    y_train = np.concatenate([y for _, y in parts[:5]])
    return x_train, y_train, parts[5][0], parts[5][1]


def _cifar10_batch(spec: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as file:
            batch = pickle.load(file, encoding="bytes")
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(spec, f"cannot read CIFAR-10 batch {path!r}: {error}") from error
    if not isinstance(batch, dict):
        raise DataError(spec, f"CIFAR-10 batch {path!r} is not a dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(spec, f"CIFAR-10 batch {path!r} lacks the key {key!r}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(spec, f"CIFAR-10 batch {path!r}: data must be N x 3072 with N labels, got {data.shape}")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def _npz(spec: str) -> tuple[np.ndarray, ...]:
    if not os.path.isfile(spec):
        raise DataError(spec, f"file {spec!r} does not exist")
    try:
        with np.load(spec, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise DataError(spec, f"the .npz lacks the key(s) {missing}; it must hold {list(NPZ_KEYS)}")
            arrays = {k: np.asarray(archive[k]) for k in NPZ_KEYS}
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt archive or pickled objects
        raise DataError(spec, f"cannot read {spec!r} as a NumPy .npz archive: {error}") from error
    x_train, x_test = (_images(spec, k, arrays[k]) for k in ("x_train", "x_test"))
    y_train, y_test = (_labels(spec, k, arrays[k]) for k in ("y_train", "y_test"))
    for x_key, x, y_key, y in (("x_train", x_train, "y_train", y_train), ("x_test", x_test, "y_test", y_test)):
        if len(x) != len(y):
            raise DataError(spec, f"{x_key} has {len(x)} samples but {y_key} has {len(y)}")
        if len(x) == 0:
            raise DataError(spec, f"{x_key} is empty")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(spec, f"x_train samples have shape {x_train.shape[1:]}, x_test {x_test.shape[1:]}")
    return x_train, y_train, x_test, y_test


def _images(spec: str, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "fiub" or x.ndim not in (2, 3, 4):
        raise DataError(
            spec, f"{key} must be a numeric array N x D, N x H x W or N x C x H x W, got {x.dtype} {x.shape}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(spec, f"{key} has NaN or infinite values")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # N x H x W x C
    return x


def _labels(spec: str, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
        raise DataError(spec, f"{key} must be a 1-D array of integer labels >= 0, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _standardise(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Dataset:
    axes = (0, 2, 3) if x_train.ndim == 4 else (0,)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if num_classes < 2:
        raise DataError(name, "the labels must name at least 2 classes")
    return Dataset(
        name,
        ((x_train - mean) / std).astype(np.float32),
        y_train,
        ((x_test - mean) / std).astype(np.float32),
        y_test,
        num_classes,
    )
