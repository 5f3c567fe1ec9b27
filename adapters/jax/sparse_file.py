"""Sparse files for JAX and Flax: a params pytree in the fggp sparse format, named by leaf path.

The format and its checks are the core's (``fggp_core.sparse_file``, docs/sparse-format.md).
Names are ``jax.tree_util.keystr`` of each leaf's path (``leaf_names``): "['params']['Dense_0']
['kernel']" for Flax Linen, "['kernel'].value" for NNX state. Loading rebuilds the caller's
pytree (``like``): its structure, with each leaf of the file checked against the leaf of ``like``
(shape, dtype) and placed with that leaf's sharding. Nothing is returned unless all is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fggp_core.errors import InputMismatchError
from fggp_core.sparse_file import PathLike, TensorRecord
from fggp_core.sparse_file import load_sparse as _load
from fggp_core.sparse_file import save_sparse as _save

from .transform import leaf_names

__all__ = ["load_sparse", "save_sparse"]


def _mask_spec(params_names: list[str], sparse: Any) -> Any:
    """None / names / name -> mask as given; a pytree of masks (``fggp.jax.masks(opt_state)``) -> name -> mask."""
    if sparse is None or (isinstance(sparse, (list, tuple)) and all(isinstance(s, str) for s in sparse)):
        return sparse
    if isinstance(sparse, Mapping) and set(sparse) <= set(params_names):
        return {n: np.asarray(jax.device_get(m)) for n, m in sparse.items()}
    return {n: np.asarray(jax.device_get(m)) for n, m in zip(leaf_names(sparse), jax.tree_util.tree_leaves(sparse))}


def save_sparse(
    params: Any,
    path: PathLike,
    *,
    sparse: Any = None,
    metadata: Mapping[str, str] | None = None,
    compress: bool = True,
) -> list[TensorRecord]:
    """Write every leaf of ``params`` (any pytree of arrays: Linen dicts, NNX state) in the fggp sparse format.

    Sharded leaves are gathered to the host. ``sparse``: None (default) stores sparse every
    floating leaf that is smaller so (its +0.0 entries are the mask); a list of leaf names; a
    mapping leaf name -> bool mask; or a pytree of masks like ``fggp.jax.masks(opt_state)``
    (``None`` leaves = not pruned), whose pruned entries must be +0.0 (``apply_masks`` first).
    ``compress``: as in ``fggp.save_sparse``. Atomic; returns one ``TensorRecord`` per leaf.
    """
    names = leaf_names(params)
    arrays = {n: np.asarray(jax.device_get(x)) for n, x in zip(names, jax.tree_util.tree_leaves(params))}
    return _save(arrays, path, sparse=_mask_spec(names, sparse), metadata=metadata, compress=compress)


def load_sparse(path: PathLike, like: Any = None, *, strict: bool = True) -> Any:
    """Read an fggp sparse file into JAX arrays, bit-exact.

    ``like`` None: a dict leaf name -> array on the default device. ``like`` a pytree (e.g. the
    freshly initialised params or NNX state): a pytree of the same structure whose leaves come
    from the file, each with the dtype and shape of ``like``'s leaf (checked; a mismatch raises
    ``InputMismatchError``) and its sharding. ``strict`` (default True): the file must hold
    exactly ``like``'s leaves; False keeps ``like``'s value for a leaf the file lacks.
    """
    loaded = _load(path)
    if like is None:
        return {name: jnp.asarray(array) for name, array in loaded.items()}
    leaves, treedef = jax.tree_util.tree_flatten(like)
    names = leaf_names(like)
    missing, unexpected = sorted(set(names) - set(loaded)), sorted(set(loaded) - set(names))
    if strict and (missing or unexpected):
        raise InputMismatchError(
            f"{path}: the file does not match `like`: missing {missing[:5]}, unexpected {unexpected[:5]} "
            "(load with strict=False to keep like's values for the leaves the file lacks)"
        )
    new = []
    for name, leaf in zip(names, leaves):
        if name not in loaded:
            new.append(leaf)
            continue
        array, shape, dtype = loaded[name], tuple(jnp.shape(leaf)), jnp.result_type(leaf)
        if array.shape != shape or array.dtype != dtype:
            raise InputMismatchError(f"{path}: leaf {name} is {array.dtype}{list(array.shape)} in the file and "
                                     f"{dtype}{list(shape)} in `like`")  # fmt: skip
        sharding = getattr(leaf, "sharding", None)
        new.append(jax.device_put(array, sharding) if sharding is not None else jnp.asarray(array))
    return jax.tree_util.tree_unflatten(treedef, new)
