"""Dense ``nn.Linear`` vs its sparse CSR form (``fggp.torch.SparseLinear``): inference time per call.

For each layer size (in x out), sparsity (random unstructured pruning, exact zeros) and batch,
both forms run on the same input in interleaved rounds in this process; reported is each
form's fastest call (the minimum: a shared machine's noise only ever adds time) and
dense / sparse (> 1: CSR is faster). Outputs are checked equal within float tolerance.

    python benchmarks/sparse_linear.py [--threads 1] [--device cpu|cuda] [--rounds 5] [--calls 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from fggp.torch import SparseLinear

SIZES = [(512, 512), (1024, 1024), (4096, 4096)]
SPARSITIES = [0.5, 0.9, 0.95, 0.98, 0.99]
BATCHES = [1, 64]


def fastest(module: nn.Module, x: torch.Tensor, calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        module(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    print(f"device {device}, {args.threads} thread(s); times in microseconds, fastest call")
    print("| in x out | sparsity | batch | dense | CSR | dense / CSR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n_in, n_out in SIZES:
        for sparsity in SPARSITIES:
            torch.manual_seed(0)
            dense = nn.Linear(n_in, n_out).to(device).eval()
            with torch.no_grad():
                dense.weight[torch.rand(dense.weight.shape, device=device) < sparsity] = 0.0
            sparse = SparseLinear(dense)
            for batch in BATCHES:
                x = torch.randn(batch, n_in, device=device)
                with torch.no_grad():
                    torch.testing.assert_close(sparse(x), dense(x), rtol=1e-4, atol=1e-4)
                    t_dense = t_sparse = float("inf")
                    for _ in range(args.rounds):  # interleaved: a slow spell hits both forms
                        t_dense = min(t_dense, fastest(dense, x, args.calls))
                        t_sparse = min(t_sparse, fastest(sparse, x, args.calls))
                row = dict(n_in=n_in, n_out=n_out, sparsity=sparsity, batch=batch, dense_s=t_dense, csr_s=t_sparse)
                rows.append(row)
                print(f"| {n_in}x{n_out} | {sparsity:.0%} | {batch} | {t_dense * 1e6:.1f} | {t_sparse * 1e6:.1f} | "
                      f"{t_dense / t_sparse:.2f} |")  # fmt: skip
    name = f"sparse_linear_{device.type}_{args.threads}t.json"
    out = Path(__file__).parent / "results" / name
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "threads": args.threads,
            "torch": torch.__version__, "rows": rows}  # fmt: skip
    out.write_text(json.dumps(info, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
