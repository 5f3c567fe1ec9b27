"""The fggp sparse file (fggp_core.sparse_file): exact round trips, sizes, refusal of bad files, atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fggp
from fggp_core.errors import ConfigError, InputMismatchError
from fggp_core.sparse_file import SparseFileError, describe_sparse, read_safetensors
from tests.strategies import DTYPES, SHAPES, numpy_dtype


def _special(width: int) -> list[int]:
    """Bit patterns of +0.0, -0.0, a quiet NaN with a payload, a signalling NaN, +inf and the smallest denormal."""
    exponent = {16: 5, 32: 8, 64: 11}[width]
    sign, mantissa = 1 << (width - 1), width - 1 - exponent
    inf = ((1 << exponent) - 1) << mantissa
    return [0, sign, inf | (1 << (mantissa - 1)) | 5, inf | 3, inf, 1]


@st.composite
def tensors(draw) -> np.ndarray:
    name = draw(st.sampled_from(DTYPES))
    dtype = np.dtype(numpy_dtype(name))
    width = dtype.itemsize * 8
    specials = _special(width) if name != "bfloat16" else [0, 0x8000, 0x7FC5, 0x7F83, 0x7F80, 1]
    shape = draw(st.sampled_from(SHAPES + [(), (3, 0, 2), (64, 9)]))
    size = int(np.prod(shape))
    fill = draw(st.sampled_from(["mixed", "zeros", "nonzero"]))  # mixed, all pruned, all kept
    if fill == "zeros":
        bits = [0] * size
    else:
        pattern = st.integers(1, (1 << width) - 1) | st.sampled_from(specials[1:])
        if fill == "mixed":
            pattern = pattern | st.just(0) | st.just(0)
        bits = draw(st.lists(pattern, min_size=size, max_size=size))
    return np.array(bits, dtype=f"u{dtype.itemsize}").view(dtype).reshape(shape)


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # bit-exact: -0.0, NaN payloads


@given(st.lists(tensors(), min_size=1, max_size=4))
def test_every_float_tensor_round_trips_bit_exact(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("rt") / "m.safetensors"
    tensors = {f"t{i}": a for i, a in enumerate(arrays)} | {"steps": np.array([3, 4], np.int64)}
    records = fggp.save_sparse(tensors, path)
    loaded = fggp.load_sparse(path)
    assert list(loaded) == list(tensors)
    for name, x in tensors.items():
        assert_same(loaded[name], x)
    for record in records:  # sparse exactly where that is smaller
        x = tensors[record.name]
        sparse_bytes = (x.size + 7) // 8 + int(np.count_nonzero(x.reshape(-1).view(f"u{x.itemsize}"))) * x.itemsize
        floating = x.dtype != np.int64
        assert (record.kind == "sparse") == (floating and sparse_bytes < x.nbytes)
        assert record.stored_bytes <= min(sparse_bytes, x.nbytes) if floating else record.stored_bytes == x.nbytes
    assert describe_sparse(path) == records


@given(tensors(), st.randoms(use_true_random=False))
def test_explicit_masks_are_stored_and_returned(tmp_path_factory, x, random):
    keep = np.array([random.random() < 0.5 for _ in range(x.size)], bool).reshape(x.shape)
    x = np.where(keep, x, np.zeros((), x.dtype))  # pruned entries are +0.0, as after finalize
    path = tmp_path_factory.mktemp("mask") / "m.safetensors"
    fggp.save_sparse({"w": x}, path, sparse={"w": keep})
    loaded, masks = fggp.load_sparse(path, with_masks=True)
    assert_same(loaded["w"], x)
    np.testing.assert_array_equal(masks["w"], keep)


def test_big_endian_arrays_are_stored_by_value(tmp_path):
    x = np.zeros(4000, ">f4")
    x[::9] = np.arange(445, dtype=np.float32) + 0.5
    fggp.save_sparse({"w": x}, tmp_path / "m.safetensors")
    loaded = fggp.load_sparse(tmp_path / "m.safetensors")["w"]
    assert loaded.dtype == np.float32 and np.array_equal(loaded, x)


def test_a_listed_tensor_is_stored_sparse_even_when_dense_is_smaller(tmp_path):
    x = np.arange(1, 9, dtype=np.float32)
    records = fggp.save_sparse({"w": x, "b": x}, tmp_path / "m.safetensors", sparse=["w"])
    assert [r.kind for r in records] == ["sparse", "dense"]
    assert_same(fggp.load_sparse(tmp_path / "m.safetensors")["w"], x)


def test_the_file_is_plain_safetensors_with_the_documented_layout(tmp_path):
    x = np.zeros((3, 4), np.float32)
    x[0, 1], x[2, 3] = 1.5, -0.0
    fggp.save_sparse({"w": x, "b": np.ones(2, np.float32)}, tmp_path / "m.safetensors", metadata={"model": "mlp"})
    metadata, stored = read_safetensors(tmp_path / "m.safetensors")
    assert metadata["fggp.format"] == "fggp-sparse" and metadata["fggp.version"] == "1" and metadata["model"] == "mlp"
    entries = json.loads(metadata["fggp.tensors"])
    assert [(e["name"], e["kind"], e["dtype"], e["shape"], e.get("mask"), e.get("values")) for e in entries] == [
        ("w", "sparse", "float32", [3, 4], "packbits", "raw"), ("b", "dense", "float32", [2], None, None)]  # fmt: skip
    # entry 1 (C order) and entry 11: most significant bit first
    np.testing.assert_array_equal(stored["w@mask"], [0b01000000, 0b00010000])
    assert stored["w@values"].tobytes() == np.array([1.5, -0.0], np.float32).tobytes()


def test_masks_and_byte_planes_of_values_are_deflated_where_smaller(tmp_path):
    x = np.zeros(100_000, np.float32)
    x[::40] = np.linspace(1.0, 1.5, 2500, dtype=np.float32)  # one exponent: the high byte planes repeat
    x[40] = -0.0
    for compress, encodings in ((True, ("packbits-zlib", "shuffle-zlib")), (False, ("packbits", "raw"))):
        record = fggp.save_sparse({"w": x}, tmp_path / "m.safetensors", compress=compress)[0]
        metadata, stored = read_safetensors(tmp_path / "m.safetensors")
        entry = json.loads(metadata["fggp.tensors"])[0]
        assert (entry["mask"], entry["values"]) == encodings
        assert record.stored_bytes == stored["w@mask"].nbytes + stored["w@values"].nbytes
        assert record.stored_bytes <= (0.5 if compress else 1.0) * (100_000 // 8 + 2500 * 4)
        assert_same(fggp.load_sparse(tmp_path / "m.safetensors")["w"], x)


def test_saving_refuses_masks_that_disagree_with_the_weights(tmp_path):
    x = np.ones((2, 2), np.float32)
    with pytest.raises(InputMismatchError, match="not \\+0.0"):
        fggp.save_sparse({"w": x}, tmp_path / "m.safetensors", sparse={"w": np.eye(2, dtype=bool)})
    with pytest.raises(InputMismatchError, match="bool"):
        fggp.save_sparse({"w": x}, tmp_path / "m.safetensors", sparse={"w": np.eye(2)})
    with pytest.raises(ConfigError, match="floating"):
        fggp.save_sparse({"n": np.arange(3)}, tmp_path / "m.safetensors", sparse=["n"])
    with pytest.raises(ConfigError, match="among the tensors"):
        fggp.save_sparse({"w": x}, tmp_path / "m.safetensors", sparse=["v"])
    with pytest.raises(ConfigError, match="unique"):
        fggp.save_sparse({"w": np.zeros(64, np.float32), "w@mask": x}, tmp_path / "m.safetensors")
    assert not os.listdir(tmp_path)


@pytest.fixture
def saved(tmp_path):
    x = np.zeros((40, 30), np.float32)
    x[::7, ::3] = 2.5
    path = tmp_path / "m.safetensors"
    fggp.save_sparse({"w": x, "b": np.ones(4, np.float32)}, path)
    return path, path.read_bytes()


def _rewrite_header(path, data: bytes, change) -> None:
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length :])


def _bytes(change):
    return lambda path, data: path.write_bytes(change(data))


def _set_meta(key, value):
    return lambda path, data: _rewrite_header(path, data, lambda h: h["__metadata__"].__setitem__(key, value))


def _entries(change):
    def apply(header):
        entries = json.loads(header["__metadata__"]["fggp.tensors"])
        change(entries)
        header["__metadata__"]["fggp.tensors"] = json.dumps(entries)

    return lambda path, data: _rewrite_header(path, data, apply)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (_bytes(lambda data: data[: len(data) - 10]), "truncated"),
        (_bytes(lambda data: data[:5]), "truncated"),
        (_bytes(lambda data: b""), "truncated"),
        (_bytes(lambda data: b"PK\x03\x04 not a safetensors file at all"), "truncated or corrupt"),
        (_bytes(lambda data: data[:-1] + bytes([data[-1] ^ 1])), "CRC-32"),
        (_set_meta("fggp.version", "2"), "version '2'; this fggp reads version 1"),
        (_set_meta("fggp.format", "other"), "not an fggp sparse file"),
        (_set_meta("fggp.tensors", "[{]"), "malformed"),
        (_entries(lambda e: e[0].__setitem__("kept", 3)), "header says float32\\[3\\]"),
        (_entries(lambda e: e[1].__setitem__("shape", [5])), "header says float32\\[5\\]"),
        (_entries(lambda e: e.append(dict(e[1]))), "twice"),
        (_entries(lambda e: e.pop()), "does not list"),
        (_entries(lambda e: e[0].__setitem__("dtype", "int8")), "does not read"),
        (_entries(lambda e: e[0].__setitem__("mask", "rle")), "encoding 'rle'"),
        (_entries(lambda e: e[0].__setitem__("values", "lz4")), "encoding 'lz4'"),
        (_entries(lambda e: e[0].__setitem__("mask", "packbits")), "mask of 'w' is uint8"),
    ],
)
def test_damaged_files_are_refused_naming_the_file_and_the_problem(saved, damage, problem):
    path, data = saved
    damage(path, data)
    with pytest.raises(SparseFileError, match=problem) as caught:
        fggp.load_sparse(path)
    assert str(caught.value).startswith(str(path))


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(SparseFileError, match="cannot be read"):
        fggp.load_sparse(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_an_interrupted_save_leaves_the_old_file_intact(saved, monkeypatch, failing):
    path, data = saved

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        fggp.save_sparse({"w": np.ones(3, np.float32)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == data and os.listdir(path.parent) == [path.name]
