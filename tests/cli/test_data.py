"""Loaders: digits, a fake CIFAR-10 folder, user .npz files in every accepted layout, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from fggp.cli.data import DataError, load_data
from tests.cli.fakes import write_fake_cifar10, write_npz


def test_digits_are_standardised_one_channel_8x8_images_with_a_fixed_split():
    data = load_data("digits")
    assert data.x_train.shape == (1347, 1, 8, 8) and data.x_test.shape == (450, 1, 8, 8)
    assert data.x_train.dtype == np.float32 and data.num_classes == 10
    assert abs(float(data.x_train.mean())) < 1e-4 and abs(float(data.x_train.std()) - 1) < 1e-3
    assert np.array_equal(load_data("digits").y_test, data.y_test)


def test_cifar10_folder_reads_the_python_batches_directly_or_nested(tmp_path):
    folder = write_fake_cifar10(str(tmp_path / "cifar-10-batches-py"), per_batch=10)
    for spec in (f"cifar10:{folder}", f"cifar10:{tmp_path}"):
        data = load_data(spec)
        assert data.x_train.shape == (50, 3, 32, 32) and data.x_test.shape == (10, 3, 32, 32)
        assert data.y_train.dtype == np.int64 and data.num_classes <= 10
        means = data.x_train.mean(axis=(0, 2, 3))
        assert np.allclose(means, 0, atol=1e-4)  # standardised per channel


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((8, 8), (1, 8, 8)), ((8, 8, 3), (3, 8, 8)), ((3, 8, 8), (3, 8, 8)), ((20,), (20,))],
)
def test_npz_layouts(tmp_path, shape, expected):
    data = load_data(write_npz(str(tmp_path / "d.npz"), shape=shape))
    assert data.input_shape == expected and data.num_classes == 4 and len(data.y_test) == 32


def test_npz_channels_last_is_transposed_not_reshaped(tmp_path):
    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    path = write_npz(str(tmp_path / "d.npz"), x_train=x, y_train=np.array([0, 1]), x_test=x, y_test=np.array([1, 0]))
    data = load_data(path)
    channel_0 = (x[..., 0] - x[..., 0].mean()) / x[..., 0].std()
    assert np.allclose(data.x_train[:, 0], channel_0, atol=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"x_train": None}, "['x_train']"),
        ({"y_train": np.zeros(3, dtype=np.int64)}, "x_train has 64 samples but y_train has 3"),
        ({"y_test": -np.ones(32, dtype=np.int64)}, "y_test must be a 1-D array of integer labels"),
        ({"x_test": np.zeros((32, 9, 9), dtype=np.float32)}, "x_test"),
        ({"x_train": np.full((64, 8, 8), np.nan, dtype=np.float32)}, "NaN"),
        ({"x_train": np.zeros((64, 2, 2, 2, 2), dtype=np.float32)}, "x_train must be a numeric array"),
    ],
)
def test_npz_errors_name_the_key(tmp_path, override, message):
    path = write_npz(str(tmp_path / "d.npz"), **override)
    with pytest.raises(DataError, match="--data") as error:
        load_data(path)
    assert message in str(error.value)


def test_pickled_objects_in_npz_are_refused(tmp_path):
    path = str(tmp_path / "objects.npz")
    np.savez(path, x_train=np.array([object()] * 2), y_train=[0, 1], x_test=np.zeros((2, 4)), y_test=[0, 1])
    with pytest.raises(DataError, match="cannot read"):
        load_data(path)
