"""``fggp.torch.flops``: dense and pruned multiply-accumulates of a model's Linear and Conv layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fggp_core.flops import FlopsReport, LayerFlops, check_input

__all__ = ["flops"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def flops(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    example: Any = None,
    pruner: Any = None,
) -> FlopsReport:
    """MACs per sample of every ``Linear``, ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` weight.

    Runs one forward pass in eval mode without gradients (the training mode is restored) to learn
    how often each weight is used (see ``fggp_core.flops``). Pass either ``input_shape``, one
    sample's shape without the batch dimension (a float zero input of batch 1 is made on the
    model's device and dtype), or ``example``: the model's input(s) for a batch of any size (a
    tensor, or a tuple of positional arguments, e.g. token ids); counts are divided by its batch
    size (dim 0 of the first tensor). Kept entries come from ``pruner.layer_report()`` when a
    ``TorchPruner`` is given (a regrown entry is kept even while it is 0.0), otherwise they are
    the non-zero weights. Layers used several times in one pass count each use. Returns a
    ``FlopsReport`` keyed by parameter name (``"features.3.weight"``).
    """
    if check_input(input_shape, example) is not None:
        first = next((p for p in model.parameters() if p.is_floating_point()), None)
        device, dtype = (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)
        example = (torch.zeros((1, *input_shape), device=device, dtype=dtype),)
    elif not isinstance(example, tuple):
        example = (example,)
    batch = next((a.shape[0] for a in example if isinstance(a, torch.Tensor) and a.dim() > 0), 1)

    positions: dict[str, int] = {}
    modules: dict[str, nn.Module] = {}

    def recorder(name: str, module: nn.Module):
        def hook(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if isinstance(module, _TRANSPOSED):
                used = args[0].numel() // module.in_channels  # each entry once per input pixel
            elif isinstance(module, _CONV):
                used = output.numel() // module.out_channels  # once per output pixel
            else:
                used = output.numel() // module.out_features  # once per output row
            positions[name] = positions.get(name, 0) + used

        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, *_CONV, *_TRANSPOSED)) and isinstance(module.weight, torch.Tensor):
            weight = f"{name}.weight" if name else "weight"
            modules[weight] = module
            handles.append(module.register_forward_hook(recorder(weight, module)))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)

    report = pruner.layer_report() if pruner is not None else {}
    layers = {}
    for name, module in modules.items():
        if name not in positions:
            continue  # not reached by this input
        size = module.weight.numel()
        kept = size - int(report[name]["pruned"]) if name in report else int(torch.count_nonzero(module.weight))
        kind = (
            "conv_transpose" if isinstance(module, _TRANSPOSED) else "conv"
            if isinstance(module, _CONV) else "linear"
        )  # fmt: skip
        layers[name] = LayerFlops(kind, positions[name] // batch, size, kept)
    return FlopsReport(layers)
