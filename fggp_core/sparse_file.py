"""The fggp sparse file: pruned tensors as a bit-packed mask plus their kept values, on safetensors.

One format for every framework (docs/sparse-format.md). A file is a safetensors file whose
header metadata holds ``fggp.format = "fggp-sparse"``, ``fggp.version = "1"`` and
``fggp.tensors``, a JSON list of one entry per tensor, in the order saved::

    {"name": str, "kind": "sparse" | "dense", "dtype": "float32", "shape": [int, ...],
     "crc32": int, and for sparse only: "kept": int, "mask": "packbits" | "packbits-zlib",
     "values": "raw" | "shuffle-zlib"}

A dense tensor is stored under its name, as is. A sparse tensor ``N`` is stored as two 1-D
tensors: ``N@mask`` (uint8: ``np.packbits`` of the C-order mask, first entry = most significant
bit of byte 0, zero padding bits; for "packbits-zlib" those bytes compressed by zlib, used when
smaller: a 95 %-sparse mask deflates to about 30 % of its bits) and ``N@values`` (the kept
entries in C order: "raw" in the tensor's dtype; "shuffle-zlib", used when smaller and not
switched off, uint8 = zlib of the byte planes of the little-endian values, all least
significant bytes first; signs and exponents of pruned weights repeat, so this saves 15-30 %).
``crc32`` is zlib's CRC-32 of the stored bytes (for sparse: mask bytes, then values bytes).

Which entries are kept: with no mask given, every entry whose bit pattern is not all zero; so
``+0.0`` is the only value left out and ``-0.0``, NaN payloads and denormals are kept with their
exact bits. With a mask given (a pruner's), the mask is stored as is and every entry it marks
pruned must be ``+0.0`` (else the file could not load exactly, and saving refuses).

Loading validates the whole file before it returns anything; any problem raises
``SparseFileError`` naming the file and what is wrong. Writing is atomic: a temporary file in
the same folder, flushed and fsynced, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import ConfigError, FGGPError, InputMismatchError

__all__ = [
    "FORMAT",
    "VERSION",
    "SparseFileError",
    "TensorRecord",
    "describe_sparse",
    "dense_record",
    "load_sparse",
    "numpy_dtype",
    "read_safetensors",
    "save_sparse",
]

FORMAT = "fggp-sparse"
VERSION = 1
MASK, VALUES = "@mask", "@values"
PathLike = Union[str, "os.PathLike[str]"]
SparseSpec = Union[Iterable[str], Mapping[str, Any], None]  # noqa: UP007 - a runtime alias on Python 3.10

# safetensors dtype codes <-> NumPy dtype names; bfloat16 is ml_dtypes'.
_CODES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL", "complex64": "C64",
}  # fmt: skip
_NAMES = {code: name for name, code in _CODES.items()}
FLOATING = ("float16", "bfloat16", "float32", "float64")


class SparseFileError(FGGPError, ValueError):
    """A file cannot be read as an fggp sparse file: ``path`` and ``problem`` say which and why."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of a file as stored: ``kind`` "sparse" or "dense"; ``kept`` = entries stored
    (sparse: set mask bits; dense: nonzero entries); ``stored_bytes`` = bytes of its data."""

    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]
    kept: int
    stored_bytes: int

    @property
    def entries(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.entries if self.entries else 0.0


def dense_record(name: str, x: np.ndarray, stored_bytes: int | None = None) -> TensorRecord:
    """The ``TensorRecord`` of ``x`` stored dense (``kept``: entries that are not +0.0 / 0 / False)."""
    stored = x.nbytes if stored_bytes is None else stored_bytes
    return TensorRecord(name, "dense", x.dtype.name, x.shape, int(np.count_nonzero(_bits(x))), stored)


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype called ``name`` ("bfloat16" is ml_dtypes')."""
    if name == "bfloat16":
        import ml_dtypes  # only where a bfloat16 tensor is met

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _bits(x: np.ndarray) -> np.ndarray:
    """The entries of ``x`` in C order as unsigned integers of the same width (exact bit patterns)."""
    return np.ascontiguousarray(x).reshape(-1).view(f"u{x.dtype.itemsize}")


def _sparse_bytes(x: np.ndarray, kept: int) -> int:
    return (x.size + 7) // 8 + kept * x.dtype.itemsize


def _crc(*parts: np.ndarray) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(np.ascontiguousarray(part).view(np.uint8).reshape(-1), crc)
    return crc


def _as_arrays(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(tensors, Mapping):
        raise ConfigError("tensors", type(tensors).__name__, "must map tensor names (str) to arrays")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise ConfigError("tensors", name, "names must be non-empty strings")
        array = np.asarray(value)
        if not array.dtype.isnative:  # e.g. '>f4' from a file: the bit-level code below works on native order
            array = array.astype(array.dtype.newbyteorder("="))
        if array.dtype.name not in _CODES:
            raise ConfigError(f"tensors[{name!r}]", str(array.dtype), f"dtype must be one of {', '.join(_CODES)}")
        arrays[name] = array
    return arrays


def _sparse_masks(arrays: dict[str, np.ndarray], sparse: SparseSpec) -> dict[str, np.ndarray | None]:
    """name -> explicit bool mask, or None (keep the nonzero bit patterns), for the tensors stored sparse."""
    if sparse is None:  # every floating tensor whose sparse encoding is smaller
        chosen: dict[str, Any] = {}
        for name, x in arrays.items():
            if x.dtype.name in FLOATING and _sparse_bytes(x, int(np.count_nonzero(_bits(x)))) < x.nbytes:
                chosen[name] = None
        return chosen
    chosen = dict(sparse) if isinstance(sparse, Mapping) else dict.fromkeys(sparse)
    allowed = "None (every floating tensor that is smaller sparse), a list of names, or a mapping name -> bool mask"
    for name, mask in chosen.items():
        if name not in arrays:
            raise ConfigError("sparse", name, f"{allowed}; names must be among the tensors saved")
        if arrays[name].dtype.name not in FLOATING:
            raise ConfigError("sparse", name, f"only floating tensors ({', '.join(FLOATING)}) are stored sparse")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != arrays[name].shape:
                raise InputMismatchError(
                    f"mask of {name!r} has dtype {mask.dtype} and shape {mask.shape}; "
                    f"it must be bool of the tensor's shape {arrays[name].shape}"
                )
            chosen[name] = mask
    return chosen


def save_sparse(
    tensors: Mapping[str, Any],
    path: PathLike,
    *,
    sparse: SparseSpec = None,
    metadata: Mapping[str, str] | None = None,
    compress: bool = True,
) -> list[TensorRecord]:
    """Write ``tensors`` (name -> array, any shape) to ``path`` in the fggp sparse format, atomically.

    ``sparse``: which tensors are stored as mask + kept values. None (default): every floating
    tensor (float16, bfloat16, float32, float64) whose sparse encoding is smaller than its dense
    bytes, keeping every entry that is not ``+0.0``; a list of names: those, the same way; a
    mapping name -> bool mask (True = kept, e.g. a pruner's masks): those with that mask, whose
    pruned entries must be ``+0.0``. Every other tensor is stored dense. ``metadata``: extra
    str -> str pairs for the header (keys must not start with ``fggp.``). ``compress`` (default
    True): zlib the masks and byte-shuffled values where that is smaller (level 6); False stores
    both raw (faster to write and read, larger).
    Returns one ``TensorRecord`` per tensor, as written.
    """
    from safetensors.numpy import save

    arrays = _as_arrays(tensors)
    chosen = _sparse_masks(arrays, sparse)
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str) or key.startswith("fggp."):
            raise ConfigError("metadata", key, "must map str to str, with keys not starting with 'fggp.'")
    stored: dict[str, np.ndarray] = {}
    entries, records = [], []
    for name, x in arrays.items():
        entry: dict[str, Any] = {"name": name, "dtype": x.dtype.name, "shape": list(x.shape)}
        if name in chosen:
            bits = _bits(x)
            mask = chosen[name]
            keep = bits != 0 if mask is None else mask.reshape(-1)
            if mask is not None and np.any(bits[~keep]):
                raise InputMismatchError(
                    f"tensor {name!r} has {int(np.count_nonzero(bits[~keep]))} entries that its mask marks pruned "
                    "but that are not +0.0; apply the mask first (e.g. finalize) or save without masks"
                )
            packed, kept_bits = np.packbits(keep), bits[keep]
            planes = kept_bits.astype(f"<u{x.itemsize}").view(np.uint8).reshape(-1, x.itemsize).T  # byte planes
            mask_bytes, mask_encoding = _smaller(packed, packed.tobytes(), compress, "packbits")
            values, values_encoding = _smaller(kept_bits.view(x.dtype), planes.tobytes(), compress, "raw")
            parts = {name + MASK: mask_bytes, name + VALUES: values}
            entry.update(kind="sparse", kept=int(keep.sum()), mask=mask_encoding, values=values_encoding)
        else:
            parts = {name: np.require(x, requirements="C")}  # ascontiguousarray makes 0-d 1-d
            entry.update(kind="dense")
        for key in parts:
            if key in stored or (key != name and key in arrays):
                raise ConfigError("tensors", key, f"stored keys must be unique; a tensor may not be named *{MASK}/*"
                                  f"{VALUES} when another is stored sparse")  # fmt: skip
        stored.update(parts)
        entry["crc32"] = _crc(*parts.values())
        entries.append(entry)
        kept = entry.get("kept", int(np.count_nonzero(_bits(x))))
        records.append(TensorRecord(name, entry["kind"], x.dtype.name, x.shape, kept,
                                    sum(p.nbytes for p in parts.values())))  # fmt: skip
    header = {**extra, "fggp.format": FORMAT, "fggp.version": str(VERSION), "fggp.tensors": json.dumps(entries)}
    _write_atomic(path, save(stored, metadata=header))
    return records


def _smaller(plain: np.ndarray, data: bytes, compress: bool, name: str) -> tuple[np.ndarray, str]:
    """(zlib of ``data`` as uint8, its encoding name) when compressing and that is smaller than ``plain``; else
    (``plain``, ``name``)."""
    if compress and plain.size:
        deflated = np.frombuffer(zlib.compress(data, 6), np.uint8)
        if deflated.nbytes < plain.nbytes:
            return deflated, {"packbits": "packbits-zlib", "raw": "shuffle-zlib"}[name]
    return plain, name


def _inflate(path: PathLike, what: str, stored: np.ndarray, size: int) -> np.ndarray:
    try:
        data = zlib.decompress(stored.tobytes()) if stored.dtype == np.uint8 and stored.ndim == 1 else b""
    except zlib.error as error:
        raise SparseFileError(path, f"{what} does not inflate ({error}): the file is corrupt") from None
    if len(data) != size:
        raise SparseFileError(path, f"{what} inflates to {len(data)} bytes, expected {size}: the file is corrupt")
    return np.frombuffer(data, np.uint8)


def _write_atomic(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a part."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; a model file is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_safetensors(path: PathLike) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Any safetensors file: (header metadata, stored name -> array (writable, owned by the caller)).

    Raises ``SparseFileError`` for an unreadable, truncated or malformed file, or an unknown dtype.
    """
    import safetensors

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise SparseFileError(path, f"cannot be read ({error.strerror or error})") from None
    try:
        views = safetensors.deserialize(data)
        length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
    except Exception as error:  # SafetensorError, or JSON that safetensors accepted but is not an object
        problem = f"is not a complete safetensors file, it may be truncated or corrupt ({error})"
        raise SparseFileError(path, problem) from None
    arrays = {}
    for key, view in views:
        if view["dtype"] not in _NAMES:
            raise SparseFileError(path, f"tensor {key!r} has dtype {view['dtype']}, which fggp does not read")
        dtype = numpy_dtype(_NAMES[view["dtype"]])
        arrays[key] = np.frombuffer(view["data"], dtype=dtype).reshape(tuple(view["shape"]))
    return metadata, arrays


def _entries(path: PathLike, metadata: dict[str, str]) -> list[dict[str, Any]]:
    if metadata.get("fggp.format") != FORMAT:
        raise SparseFileError(path, "is a safetensors file but not an fggp sparse file (no fggp.format in its header)")
    if metadata.get("fggp.version") != str(VERSION):
        raise SparseFileError(path, f"has fggp sparse format version {metadata.get('fggp.version')!r}; "
                              f"this fggp reads version {VERSION}")  # fmt: skip
    try:
        entries = json.loads(metadata["fggp.tensors"])
        assert isinstance(entries, list)
        for entry in entries:
            assert isinstance(entry["name"], str) and entry["kind"] in ("sparse", "dense")
            assert isinstance(entry["dtype"], str) and isinstance(entry["crc32"], int)
            assert all(isinstance(d, int) and d >= 0 for d in entry["shape"])
            assert entry["kind"] == "dense" or isinstance(entry["kept"], int)
    except (KeyError, TypeError, ValueError, AssertionError):
        raise SparseFileError(path, "has a malformed fggp.tensors list in its header") from None
    return entries


def _keys(entry: dict[str, Any]) -> list[str]:
    name = entry["name"]
    return [name] if entry["kind"] == "dense" else [name + MASK, name + VALUES]


def _decode(path: PathLike, entry: dict[str, Any], stored: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The tensor of ``entry`` (and its mask) from the stored arrays, after checking every fact about them."""
    name, shape = entry["name"], tuple(entry["shape"])
    if entry["dtype"] not in _CODES or (entry["kind"] == "sparse" and entry["dtype"] not in FLOATING):
        raise SparseFileError(path, f"tensor {name!r} has dtype {entry['dtype']!r}, which fggp does not read here")
    dtype = numpy_dtype(entry["dtype"])
    size = int(np.prod(shape, dtype=np.int64))
    keys = _keys(entry)
    for key in keys:
        if key not in stored:
            raise SparseFileError(path, f"tensor {name!r} lacks its stored data {key!r}")
    if _crc(*(stored[k] for k in keys)) != entry["crc32"]:
        raise SparseFileError(path, f"tensor {name!r} fails its CRC-32 check: the file is corrupt")
    if entry["kind"] == "dense":
        x = stored[name]
        if x.dtype != dtype or x.shape != shape:
            raise SparseFileError(path, f"tensor {name!r} is stored as {x.dtype}{list(x.shape)}, "
                                  f"its header says {entry['dtype']}{list(shape)}")  # fmt: skip
        return x, np.ones(shape, bool)
    packed, values, kept = stored[name + MASK], stored[name + VALUES], entry["kept"]
    if entry.get("mask") == "packbits-zlib":
        packed = _inflate(path, f"mask of {name!r}", packed, (size + 7) // 8)
    elif entry.get("mask") != "packbits":
        raise SparseFileError(path, f"mask of {name!r} has encoding {entry.get('mask')!r}; this fggp reads "
                              "'packbits' and 'packbits-zlib'")  # fmt: skip
    if packed.dtype != np.uint8 or packed.shape != ((size + 7) // 8,):
        raise SparseFileError(path, f"mask of {name!r} is {packed.dtype}{list(packed.shape)}, "
                              f"expected uint8[{(size + 7) // 8}] for shape {list(shape)}")  # fmt: skip
    keep = np.unpackbits(packed)
    if np.any(keep[size:]):
        raise SparseFileError(path, f"mask of {name!r} has set padding bits: the file is corrupt")
    keep = keep[:size].astype(bool)
    count = int(np.count_nonzero(keep))
    if entry.get("values") == "shuffle-zlib" and count == kept:
        planes = _inflate(path, f"values of {name!r}", values, kept * dtype.itemsize).reshape(dtype.itemsize, kept)
        values = planes.T.copy().view(f"<u{dtype.itemsize}").reshape(-1).view(dtype)
    elif entry.get("values") not in ("raw", "shuffle-zlib"):
        raise SparseFileError(path, f"values of {name!r} have encoding {entry.get('values')!r}; this fggp reads "
                              "'raw' and 'shuffle-zlib'")  # fmt: skip
    if values.dtype != dtype or values.shape != (count,) or count != kept:
        raise SparseFileError(path, f"values of {name!r} are {values.dtype}[{values.size}]; its mask keeps {count} "
                              f"and its header says {entry['dtype']}[{kept}]")  # fmt: skip
    bits = np.zeros(size, f"u{dtype.itemsize}")  # all +0.0
    bits[keep] = values.view(bits.dtype)
    return bits.view(dtype).reshape(shape), keep.reshape(shape)


def _load(path: PathLike) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
    """(header entries, name -> tensor, name -> mask of the sparse ones, name -> bytes stored)."""
    metadata, stored = read_safetensors(path)
    entries = _entries(path, metadata)
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise SparseFileError(path, "lists a tensor name twice in its header")
    tensors, masks = {}, {}
    for entry in entries:
        tensors[entry["name"]], mask = _decode(path, entry, stored)
        if entry["kind"] == "sparse":
            masks[entry["name"]] = mask
    used = {k for e in entries for k in _keys(e)}
    if set(stored) - used:
        raise SparseFileError(path, f"holds tensors its header does not list: {sorted(set(stored) - used)[:5]}")
    return entries, tensors, masks, {e["name"]: sum(stored[k].nbytes for k in _keys(e)) for e in entries}


def load_sparse(path: PathLike, *, with_masks: bool = False) -> Any:
    """Read an fggp sparse file: name -> NumPy array (its saved shape and dtype, bit-exact), in saved order.

    Everything is validated first (format, version, header, sizes, CRC-32 of every tensor); any
    problem raises ``SparseFileError`` naming the file and what is wrong. ``with_masks=True``
    returns ``(tensors, masks)``, masks = name -> bool array (True = kept) for the tensors stored
    sparse. bfloat16 arrays are ``ml_dtypes.bfloat16``.
    """
    _, tensors, masks, _ = _load(path)
    return (tensors, masks) if with_masks else tensors


def describe_sparse(path: PathLike) -> list[TensorRecord]:
    """One ``TensorRecord`` per tensor of an fggp sparse file (validated as ``load_sparse`` does)."""
    entries, tensors, _, stored = _load(path)
    records = []
    for entry in entries:
        x, name = tensors[entry["name"]], entry["name"]
        if entry["kind"] == "sparse":
            records.append(TensorRecord(name, "sparse", entry["dtype"], x.shape, entry["kept"], stored[name]))
        else:
            records.append(dense_record(entry["name"], x))
    return records
