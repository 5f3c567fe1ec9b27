"""``fggp inspect FILE`` and ``fggp export IN OUT``: what a checkpoint holds, and its fggp sparse form.

Readable files: PyTorch state dicts (``.pt``, ``.pth``; loaded with ``weights_only=True``),
Keras 3 models (``.keras``), safetensors files (``.safetensors``, dense or fggp sparse) and
NumPy archives (``.npz``). Every failure to read is an ``FGGPError`` with one line naming the
file and the problem, which ``fggp`` prints without a traceback (exit status 2).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from fggp_core.errors import FGGPError
from fggp_core.sparse_file import SparseFileError, dense_record, describe_sparse, numpy_dtype, read_safetensors

__all__ = ["KINDS", "read_dense", "inspect_file", "export_file", "format_records"]

KINDS = {".pt": "torch", ".pth": "torch", ".keras": "keras", ".safetensors": "safetensors", ".npz": "npz"}


def _kind(path: str) -> str:
    if not os.path.isfile(path):
        raise SparseFileError(path, "no such file" if not os.path.exists(path) else "is not a file")
    kind = KINDS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise SparseFileError(path, f"unknown file type; fggp reads {', '.join(KINDS)}")
    return kind


def _one_line(error: BaseException) -> str:
    """``Type: first sentence`` of an error from a reader library (some write paragraphs)."""
    text = str(error).strip().splitlines()
    first = text[0].split(". ")[0].rstrip(".") if text else ""
    return f"{type(error).__name__}: {first[:160]}" if first else type(error).__name__


def _torch(path: str) -> dict[str, np.ndarray]:
    import torch

    from fggp.torch.sparse_file import to_numpy

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and version errors all mean: not a readable state dict
        raise SparseFileError(path, f"cannot be read as a PyTorch state dict ({_one_line(error)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(isinstance(t, torch.Tensor) for t in state.values()):
        raise SparseFileError(path, "holds no state dict (a mapping of names to tensors)")
    return {n: to_numpy(t) for n, t in state.items() if isinstance(t, torch.Tensor)}


def _keras(path: str) -> dict[str, np.ndarray]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up lines are noise here
    import keras

    from fggp.keras.sparse_file import _to_numpy

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise SparseFileError(path, f"cannot be loaded as a Keras model ({_one_line(error)})") from None
    return {v.path: _to_numpy(v) for v in model.weights}


def _npz(path: str) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        with zipfile.ZipFile(path) as archive:
            stored = {info.filename.removesuffix(".npy"): info.compress_size for info in archive.infolist()}
    except Exception as error:
        raise SparseFileError(path, f"cannot be read as a NumPy .npz archive ({_one_line(error)})") from None
    return arrays, stored


def read_dense(path: str) -> dict[str, np.ndarray]:
    """The tensors of a dense checkpoint (torch state dict, .keras, .npz, dense or sparse .safetensors)."""
    kind = _kind(path)
    if kind == "torch":
        return _torch(path)
    if kind == "keras":
        return _keras(path)
    if kind == "npz":
        return _npz(path)[0]
    metadata, arrays = read_safetensors(path)
    if metadata.get("fggp.format") is not None:
        from fggp_core.sparse_file import load_sparse

        return load_sparse(path)
    return arrays


def inspect_file(path: str) -> dict[str, Any]:
    """Per-tensor records and totals of ``path``: ``{"file", "format", "file_bytes", "tensors", "totals"}``."""
    kind = _kind(path)
    format_ = kind
    if kind == "safetensors":
        metadata, arrays = read_safetensors(path)
        if metadata.get("fggp.format") is not None:
            records, format_ = describe_sparse(path), "fggp-sparse"
        else:
            records = [dense_record(n, x) for n, x in arrays.items()]
    elif kind == "npz":
        arrays, stored = _npz(path)
        records = [dense_record(n, x, stored.get(n)) for n, x in arrays.items()]
    else:
        records = [dense_record(n, x) for n, x in read_dense(path).items()]
    entries = sum(r.entries for r in records)
    kept = sum(r.kept for r in records)
    totals = {
        "tensors": len(records), "sparse_tensors": sum(r.kind == "sparse" for r in records), "entries": entries,
        "kept": kept, "sparsity": 1 - kept / entries if entries else 0.0,
        "stored_bytes": sum(r.stored_bytes for r in records),
        "dense_bytes": sum(r.entries * numpy_dtype(r.dtype).itemsize for r in records),
    }  # fmt: skip
    return {
        "file": path, "format": format_, "file_bytes": os.path.getsize(path),
        "tensors": [{"name": r.name, "kind": r.kind, "dtype": r.dtype, "shape": list(r.shape), "entries": r.entries,
                     "kept": r.kept, "sparsity": r.sparsity, "stored_bytes": r.stored_bytes} for r in records],
        "totals": totals,
    }  # fmt: skip


def format_records(info: dict[str, Any]) -> str:
    """A fixed-width table of ``inspect_file``'s result."""
    head = ("tensor", "kind", "dtype", "shape", "entries", "sparsity", "bytes")
    rows = [(t["name"], t["kind"], t["dtype"], "x".join(map(str, t["shape"])) or "scalar", str(t["entries"]),
             f"{100 * t['sparsity']:.2f} %", str(t["stored_bytes"])) for t in info["tensors"]]  # fmt: skip
    total = info["totals"]
    rows.append(("total", f"{total['sparse_tensors']}/{total['tensors']} sparse", "", "", str(total["entries"]),
                 f"{100 * total['sparsity']:.2f} %", str(total["stored_bytes"])))  # fmt: skip
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    right = {4, 5, 6}

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines = [line(head), "  ".join("-" * w for w in widths), *map(line, rows[:-1]), line(rows[-1])]
    lines.append(f"{info['file']}: {info['format']}, {info['file_bytes']} bytes on disk "
                 f"({total['dense_bytes']} bytes of tensor data dense)")  # fmt: skip
    return "\n".join(lines)


def export_file(source: str, target: str) -> dict[str, Any]:
    """Write the tensors of the dense checkpoint ``source`` to ``target`` in the fggp sparse format."""
    from fggp_core.sparse_file import save_sparse

    if os.path.splitext(target)[1].lower() != ".safetensors":
        raise FGGPError(f"{target}: the output of export must be a .safetensors file")
    if os.path.abspath(source) == os.path.abspath(target):
        raise FGGPError(f"{target}: export writes a new file; choose an output other than the input")
    arrays = read_dense(source)
    if not arrays:
        raise SparseFileError(source, "holds no tensors")
    save_sparse(arrays, target)
    return inspect_file(target)
