"""Sparse files for Keras 3: a model's weights in the fggp sparse format, named by variable path.

The format and its checks are the core's (``fggp_core.sparse_file``, docs/sparse-format.md).
Names are ``variable.path`` (e.g. "mlp/dense/kernel"), readable in NumPy and by name mapping in
other frameworks. Keras numbers auto-named layers per process ("dense_1" for the second Dense
built), so a freshly built model of the same architecture may have other paths; loading then
matches by position in ``model.weights``, as Keras's own ``load_weights`` does, when the count,
shapes and dtypes all agree. Loading checks and converts every weight first and assigns only
then, so a refused file changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from fggp_core.errors import ConfigError, InputMismatchError
from fggp_core.sparse_file import PathLike, TensorRecord, numpy_dtype
from fggp_core.sparse_file import load_sparse as _load
from fggp_core.sparse_file import save_sparse as _save

__all__ = ["load_sparse", "save_sparse"]


def _weights(model: Any) -> dict[str, Any]:
    if not isinstance(model, keras.Model):
        raise ConfigError("model", type(model).__name__, "must be a keras.Model")
    weights = {v.path: v for v in model.weights}
    if len(weights) != len(model.weights):
        raise ConfigError("model", model.name, "has variables sharing a path; their weights cannot be named apart")
    if not weights:
        raise ConfigError("model", model.name, "has no weights; build it first (call it once or model.build(shape))")
    return weights


def _to_numpy(variable: Any) -> np.ndarray:
    """The variable's value on the host in its own dtype (some backends widen bfloat16; narrowing back is exact)."""
    dtype = numpy_dtype(keras.backend.standardize_dtype(variable.dtype))
    array = np.asarray(keras.ops.convert_to_numpy(variable.value))
    return array if array.dtype == dtype else array.astype(dtype)


def save_sparse(
    model: Any,
    path: PathLike,
    *,
    sparse: Any = None,
    metadata: Mapping[str, str] | None = None,
    compress: bool = True,
) -> list[TensorRecord]:
    """Write every weight of ``model`` (``model.weights``, by ``variable.path``) in the fggp sparse format.

    ``sparse``: None (default) stores sparse every floating weight that is smaller so (its +0.0
    entries are the mask); a list of paths; a mapping path -> bool mask; or a
    ``PruningCallback``, whose masks are stored (pruned entries must be +0.0, as after ``fit``).
    ``compress``: as in ``fggp.save_sparse``. Atomic; returns one ``TensorRecord`` per weight.
    """
    from .callback import PruningCallback

    weights = _weights(model)
    if isinstance(sparse, PruningCallback):
        sparse = sparse.masks
    arrays = {p: _to_numpy(v) for p, v in weights.items()}
    return _save(arrays, path, sparse=sparse, metadata=metadata, compress=compress)


def _same_layout(weights: dict[str, Any], loaded: dict[str, np.ndarray]) -> bool:
    return len(weights) == len(loaded) and all(
        tuple(v.shape) == a.shape and keras.backend.standardize_dtype(v.dtype) == a.dtype.name
        for v, a in zip(weights.values(), loaded.values())
    )


def load_sparse(model: Any, path: PathLike, *, strict: bool = True) -> Any:
    """Assign the weights of an fggp sparse file to the built ``model``, exactly; returns ``model``.

    Weights are matched by variable path; when the paths differ but the file holds as many
    weights as the model with the same shapes and dtypes in ``model.weights`` order (the same
    architecture, other auto-generated layer names), by position. ``strict`` (default True):
    otherwise the names must be equal; False loads the paths both have. Names, shapes and
    dtypes are all checked before any assignment.
    """
    weights = _weights(model)
    loaded = _load(path)
    if set(weights) != set(loaded) and _same_layout(weights, loaded):
        loaded = dict(zip(weights, loaded.values()))
    missing, unexpected = sorted(set(weights) - set(loaded)), sorted(set(loaded) - set(weights))
    if strict and (missing or unexpected):
        raise InputMismatchError(
            f"{path}: the file does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]} "
            "(load with strict=False to load the paths both have)"
        )
    ready = {}
    for name, variable in weights.items():
        if name not in loaded:
            continue
        array, dtype = loaded[name], keras.backend.standardize_dtype(variable.dtype)
        if tuple(array.shape) != tuple(variable.shape) or array.dtype.name != dtype:
            raise InputMismatchError(f"{path}: weight {name!r} is {array.dtype}{list(array.shape)} in the file and "
                                     f"{dtype}{list(variable.shape)} in the model")  # fmt: skip
        ready[name] = keras.ops.convert_to_tensor(array, dtype=dtype)
    for name, value in ready.items():
        weights[name].assign(value)
    return model
