"""Sharded parameters (FSDP2 ``fully_shard``, DTensor): the selection on each rank's shard only.

A DTensor parameter sharded along dim 0 holds, on each rank, one contiguous block of the
global tensor in C order (``torch.chunk`` rows: earlier ranks of the mesh dimension hold
earlier rows, the last blocks may be short or empty). The core's algorithm then runs on the
local blocks unchanged; ranks talk only in ``reduce`` (one all-reduce of a histogram of
``2**digit_bits`` counts, or of one count) and ``tally`` (one all-gather of one count per
tensor), so no rank receives O(N) data and the masks equal one process's, whatever the world
size: ties go to earlier tensors, then earlier ranks' blocks, then C order within a block.

Supported: every prunable parameter a DTensor on the same device mesh with the same
placements, each ``Shard(0)`` (on at most one mesh dimension) or ``Replicate()`` (HSDP's
replica dimension: replicas compute the same masks and do not take part in the sums).
Anything else (``Shard(1)``, ``Partial``, strided shards, parameters on different meshes,
DTensor mixed with regular tensors, FSDP1) is refused at ``attach`` with a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fggp_core.errors import ConfigError

from .backend import TorchBackend

__all__ = ["ShardedTorchBackend", "backend_for", "check_not_fsdp1", "is_dtensor", "local"]


def _dtensor_types() -> tuple[type, ...]:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return ()
    return (DTensor,)


def is_dtensor(x: Any) -> bool:
    return isinstance(x, _dtensor_types())


def local(x: Any) -> Any:
    """A DTensor's local block (a view of its storage: in-place changes reach the parameter); else ``x``."""
    return x.to_local() if isinstance(x, _dtensor_types()) else x


def _contiguous_stride(shape: Sequence[int]) -> tuple[int, ...]:
    stride, out = 1, []
    for n in reversed(shape):
        out.append(stride)
        stride *= max(int(n), 1)
    return tuple(reversed(out))


class ShardedTorchBackend(TorchBackend):
    """``TorchBackend`` over DTensors sharded along dim 0 on one mesh with one set of placements.

    Arrays the core holds (masks, weights, gradients) are DTensors with the global shape;
    ``flat`` hands the algorithm each rank's local block, ``unflat`` wraps a local block back.
    ``reduce``/``tally`` are the only collectives, over the process group of the mesh
    dimension that shards (none when every placement is ``Replicate``).
    """

    name = "torch-sharded"
    digit_bits = 11  # 2048-bin histograms (16 KiB per all-reduce); 3 passes over int32 keys

    def __init__(self, mesh: Any, placements: Sequence[Any], block: int = 1 << 20) -> None:
        super().__init__(block)
        from torch.distributed.tensor import Shard

        self.mesh = mesh
        self.placements = tuple(placements)
        dims = [i for i, p in enumerate(self.placements) if isinstance(p, Shard)]
        self.dim = dims[0] if dims else None
        self.group = None if self.dim is None else mesh.get_group(self.dim)
        self.rank = 0 if self.dim is None else mesh.get_local_rank(self.dim)
        self.world = 1 if self.dim is None else mesh.size(self.dim)

    # -- global arrays <-> local blocks --------------------------------------------------------
    def _block(self, shape: Sequence[int]) -> tuple[tuple[int, ...], int]:
        """This rank's local shape of a global ``shape`` and its first row."""
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        local_shape, offset = compute_local_shape_and_global_offset(tuple(shape), self.mesh, self.placements)
        return tuple(local_shape), int(offset[0]) if offset else 0

    def _wrap(self, block: torch.Tensor, shape: Sequence[int]) -> Any:
        from torch.distributed.tensor import DTensor

        return DTensor.from_local(
            block, self.mesh, self.placements, run_check=False, shape=torch.Size(shape),
            stride=_contiguous_stride(shape),
        )

    def flat(self, x: Any) -> torch.Tensor:
        return super().flat(local(x))

    def unflat(self, x: torch.Tensor, shape: tuple[int, ...]) -> Any:
        return self._wrap(x.reshape(self._block(shape)[0]), shape)

    def to_host(self, x: Any) -> np.ndarray:
        # the whole tensor on every rank: only for reports and single-file state, never in an event
        return super().to_host(x.full_tensor() if isinstance(x, _dtensor_types()) else x)

    def from_host(self, x: Any, like: Any) -> Any:
        """``x`` (a global host array, a global tensor, or a DTensor like ``like``) as a DTensor like ``like``."""
        if isinstance(x, _dtensor_types()):
            if tuple(x.placements) != self.placements or x.device_mesh != self.mesh:
                raise ConfigError("mask", f"placements {x.placements}", f"must be {self.placements} on {self.mesh}")
            return x
        shape = tuple(x.shape)
        local_shape, row = self._block(shape)
        block = x[row : row + local_shape[0]] if shape else x
        if isinstance(block, torch.Tensor):
            block = block.to(local(like).device)
        else:
            block = super().from_host(np.asarray(block), local(like))
        return self._wrap(block.reshape(local_shape), shape)

    def keys(self, t: Any, other: Any, score: str, out: torch.Tensor | None = None) -> torch.Tensor:
        return super().keys(local(t), None if other is None else local(other), score, out=out)

    def host_keys(self, values: np.ndarray, like: Any) -> torch.Tensor:
        """Keys of this rank's block of a tensor's host values (the Random draw of the whole tensor)."""
        if isinstance(like, _dtensor_types()):
            shape = tuple(like.shape)
            local_shape, row = self._block(shape)
            width = int(np.prod(shape[1:], dtype=np.int64))
            values = values[row * width : (row + local_shape[0]) * width]
        return super().host_keys(values, local(like))

    def count(self, mask: Any) -> torch.Tensor:
        return super().count(local(mask))

    # -- the only collectives -----------------------------------------------------------------
    def reduce(self, values: Sequence[Any], tensors: Sequence[int]) -> torch.Tensor:
        total = sum(values[1:], values[0]).clone()
        if self.group is not None:
            dist.all_reduce(total, group=self.group)
        return total

    def tally(self, counts: Sequence[Any], tensors: Sequence[int]) -> tuple[list[Any], list[Any]]:
        mine = torch.stack([torch.as_tensor(c, dtype=torch.int64) for c in counts])
        if self.group is None:
            return list(mine), [0] * len(counts)
        every = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine, group=self.group)
        table = torch.stack(every)  # [ranks, tensors]; rank order is block order along dim 0
        return list(table.sum(0)), list(table[: self.rank].sum(0))


def _refuse(name: str, what: Any, allowed: str) -> None:
    raise ConfigError(f"prunable[{name!r}]", what, allowed)


def check_not_fsdp1(model: nn.Module) -> None:
    """FSDP1 (``FullyShardedDataParallel``) flattens parameters: refuse it, pointing to FSDP2."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return
    if isinstance(model, nn.Module) and any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise ConfigError(
            "model", "FullyShardedDataParallel (FSDP1)",
            "is not supported: its flat parameters hide the layers' weights; shard with FSDP2 "
            "(torch.distributed.fsdp.fully_shard) instead, which fggp prunes exactly",
        )


def backend_for(params: dict[str, nn.Parameter], default: TorchBackend) -> TorchBackend:
    """``default`` for regular tensors; a ``ShardedTorchBackend`` when the parameters are DTensors
    it handles exactly; else a ``ConfigError`` naming the parameter and its placement."""
    types = _dtensor_types()
    sharded = {n: p for n, p in params.items() if isinstance(p, types)}
    if not sharded:
        return default
    from torch.distributed.tensor import Replicate, Shard

    plain = [n for n in params if n not in sharded]
    if plain:
        _refuse(plain[0], "a regular tensor", f"must be a DTensor like {next(iter(sharded))!r}: fggp does not mix "
                "DTensor and regular prunable parameters (shard the whole model, or leave these out with prunable=)")
    first, p0 = next(iter(sharded.items()))
    for name, p in sharded.items():
        if p.device_mesh != p0.device_mesh or tuple(p.placements) != tuple(p0.placements):
            _refuse(name, f"placements {tuple(p.placements)} on {p.device_mesh}",
                    f"must equal {first!r}'s {tuple(p0.placements)} on {p0.device_mesh} (one mesh and placement "
                    "for all prunable parameters)")
        shards = [q for q in p.placements if isinstance(q, Shard)]
        exact = all(type(q) is Replicate or (type(q) is Shard and q.dim == 0) for q in p.placements)
        if not exact or len(shards) > 1:  # (a strided shard is a subclass of Shard: refused too)
            _refuse(name, f"placements {tuple(p.placements)}",
                    "each placement must be Shard(0) (on at most one mesh dimension) or Replicate(): only then is "
                    "each rank's block contiguous in C order, which exact ties need (FSDP2's default is Shard(0))")
    return ShardedTorchBackend(p0.device_mesh, p0.placements, block=default.block)
