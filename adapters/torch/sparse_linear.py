"""Inference with pruned ``nn.Linear`` layers as torch sparse CSR matrices — only where it is faster.

A pruned weight saves time only when the sparse kernel beats the dense one on the actual
hardware, input shape and thread count. Measured on this project's CPU (benchmarks/sparse_linear.py,
README "Sparse inference", 1 thread): CSR is 2-9x slower at 50 % sparsity at every size; at
90 % and more it wins at batch 64 (1.8-18x); at batch 1 a 512x512 layer needs 99 %, a 1024x1024
one 95 % and a 4096x4096 one 90 %, since the sparse call's fixed cost (~20 us) dominates small
products. The rule depends on the machine, so ``to_sparse_linear`` times both
forms on the caller's example input and converts a layer only if its CSR form measured faster
(``only_if_faster=True``, the default). ``SparseLinear`` is for inference: its weight is a
buffer, not a parameter, and it has no gradient.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import nn

from fggp_core.errors import ConfigError

__all__ = ["SparseLinear", "to_sparse_linear"]


def _csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` (out_features x in_features) held as sparse CSR; x of shape (..., in_features)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", _csr(linear.weight))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = (self.weight @ flat.t()).t()  # CSR @ dense: MKL's sparse kernel on CPU, cuSPARSE on CUDA
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kept = self.weight.values().numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, kept={kept}"


def _time(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """The fastest of ``repeats`` calls, in seconds (the minimum: the machine's noise only adds time)."""
    best = float("inf")
    for _ in range(repeats):
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        module(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _supported(sparse: SparseLinear, dense: nn.Linear) -> bool:
    """Whether torch implements this layer's CSR product for its dtype and device (one tiny call)."""
    try:
        with torch.no_grad():
            sparse(torch.zeros(1, dense.in_features, dtype=dense.weight.dtype, device=dense.weight.device))
    except (RuntimeError, NotImplementedError):
        return False
    return True


def to_sparse_linear(
    model: nn.Module,
    example_input: Any = None,
    *,
    min_sparsity: float = 0.9,
    only_if_faster: bool = True,
    repeats: int = 20,
) -> dict[str, dict[str, float | bool]]:
    """Replace, in place, the ``nn.Linear`` layers of ``model`` whose weights are sparse enough by ``SparseLinear``.

    ``min_sparsity`` (default 0.9; below it CSR never measured faster): a layer is a candidate
    when at least this fraction of its weight entries is zero. ``only_if_faster`` (default
    True): each candidate is timed dense and CSR on the input it receives when
    ``model(example_input)`` runs (``example_input``: a tensor or a tuple of positional
    arguments, required then), in two interleaved rounds, the minimum of ``repeats`` calls
    each, and converted only if CSR measured faster. Returns, per candidate layer name,
    ``{"sparsity", "dense_s", "sparse_s", "converted"}`` (times NaN when not measured). Call
    under ``model.eval()``; outputs equal the dense layer's within float rounding. The root
    module itself is never replaced (it cannot be, in place), nor a layer whose dtype has no CSR
    product on its device (float16 and bfloat16 on CPU in torch 2.13).
    """
    if not 0.0 <= min_sparsity <= 1.0:
        raise ConfigError("min_sparsity", min_sparsity, "must be in [0, 1]")
    if only_if_faster and example_input is None:
        raise ConfigError("example_input", None, "a tensor (or tuple of arguments) is needed when only_if_faster=True")
    candidates = {}
    for name, module in model.named_modules():
        if name and type(module) is nn.Linear and module.weight.numel():  # the root cannot be replaced in place
            sparsity = float((module.weight == 0).sum()) / module.weight.numel()
            if sparsity >= min_sparsity:
                candidates[name] = (module, sparsity)
    inputs: dict[str, torch.Tensor] = {}
    if only_if_faster and candidates:
        hooks = [m.register_forward_pre_hook(lambda _, args, n=n: inputs.setdefault(n, args[0].detach()))
                 for n, (m, _) in candidates.items()]  # fmt: skip
        training = model.training
        try:
            with torch.no_grad():
                model.eval()  # the probing call must not update BatchNorm statistics or draw dropout
                model(*(example_input if isinstance(example_input, tuple) else (example_input,)))
        finally:
            model.train(training)
            for hook in hooks:
                hook.remove()
    report: dict[str, dict[str, float | bool]] = {}
    nan = float("nan")
    for name, (module, sparsity) in candidates.items():
        sparse = SparseLinear(module)
        dense_s = sparse_s = nan
        if not _supported(sparse, module):  # e.g. float16/bfloat16 CSR products on CPU are not implemented
            report[name] = {"sparsity": sparsity, "dense_s": nan, "sparse_s": nan, "converted": False}
            continue
        if only_if_faster and name in inputs:
            x, dense_s, sparse_s = inputs[name], float("inf"), float("inf")
            with torch.no_grad():
                for _ in range(2):  # interleaved rounds: a slow spell of the machine hits both forms
                    dense_s = min(dense_s, _time(module, x, repeats // 2 or 1))
                    sparse_s = min(sparse_s, _time(sparse, x, repeats // 2 or 1))
        converted = not only_if_faster or (name in inputs and sparse_s < dense_s)
        if converted:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, sparse)
        report[name] = {"sparsity": sparsity, "dense_s": dense_s, "sparse_s": sparse_s, "converted": converted}
    return report
