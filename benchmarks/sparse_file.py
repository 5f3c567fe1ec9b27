"""File sizes of a pruned model: dense ``torch.save``, its gzip, the fggp sparse file and its gzip.

The model: an MLP 784-1024-1024-512-10 (2.4 M prunable float32 weights in its Linear kernels,
plus biases and a BatchNorm as the dense rest), its kernels pruned globally by magnitude to
each sparsity (exact +0.0 entries, as after ``fggp.torch.finalize``). Checked per sparsity s:
the sparse file is at most (1 - s) * 4 + 0.2 bytes per prunable entry plus the dense rest
(its bytes in ``torch.save``'s data), smaller than gzip of the dense file, and float16 /
bfloat16 models keep their dtype and shrink in proportion. gzip is level 6 (the default).
Also reported: the file without compression (``compress=False``: plain bit mask, raw values)
and the wall time of ``fggp.torch.save_sparse`` / ``load_sparse`` (one call each).

    python benchmarks/sparse_file.py [--sparsities 0.9 0.95 0.98]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import fggp.torch as ft

RESULTS = Path(__file__).parent / "results" / "sparse_file.json"


def pruned_mlp(sparsity: float, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
        nn.BatchNorm1d(512), nn.Linear(512, 10),
    )  # fmt: skip
    kernels = [m.weight for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        scores = torch.cat([w.abs().reshape(-1) for w in kernels])
        k = int(round(sparsity * scores.numel()))
        threshold = scores.kthvalue(k).values if k else -1.0
        for w in kernels:
            w[w.abs() <= threshold] = 0.0
    return model.to(dtype)


def sizes(model: nn.Module) -> dict[str, float]:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    dense = buffer.getvalue()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.safetensors"
        start = time.perf_counter()
        records = ft.save_sparse(model, path)
        saved = time.perf_counter()
        ft.load_sparse(model, path)
        loaded = time.perf_counter()
        sparse = path.read_bytes()
        ft.save_sparse(model, path, compress=False)
        raw = path.stat().st_size
    kernels = {n for n, p in model.named_parameters() if p.ndim == 2}
    prunable = sum(r.entries for r in records if r.name in kernels)
    rest = sum(t.numel() * t.element_size() for n, t in model.state_dict().items() if n not in kernels)
    return {
        "prunable": prunable, "dense_rest_bytes": rest,
        "dense": len(dense), "dense_gzip": len(gzip.compress(dense)),
        "sparse": len(sparse), "sparse_gzip": len(gzip.compress(sparse)), "sparse_raw": raw,
        "save_s": round(saved - start, 4), "load_s": round(loaded - saved, 4),
        "sparse_tensors": sum(r.kind == "sparse" for r in records),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98])
    args = parser.parse_args()
    rows = []
    print("| dtype | sparsity | dense torch.save | dense + gzip | fggp sparse | fggp sparse + gzip | bound | "
          "sparse / dense | raw (compress=False) | save / load |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for s in args.sparsities:
            row = sizes(pruned_mlp(s, dtype))
            width = torch.finfo(dtype).bits // 8
            row["bound"] = round(row["prunable"] * ((1 - s) * width + 0.2) + row["dense_rest_bytes"])
            row.update(dtype=str(dtype).removeprefix("torch."), sparsity=s)
            row["within_bound"] = row["sparse"] <= row["bound"]
            row["smaller_than_dense_gzip"] = row["sparse"] < row["dense_gzip"]
            rows.append(row)

            def mb(n: float) -> str:
                return f"{n / 1e6:.3f} MB"

            print(f"| {row['dtype']} | {s:.0%} | {mb(row['dense'])} | {mb(row['dense_gzip'])} | {mb(row['sparse'])} | "
                  f"{mb(row['sparse_gzip'])} | {mb(row['bound'])} | {row['sparse'] / row['dense']:.1%} | "
                  f"{mb(row['sparse_raw'])} | {row['save_s']:.3f} s / {row['load_s']:.3f} s |")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"model": "MLP 784-1024-1024-512-10 + BatchNorm1d(512)", "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")
    assert all(r["within_bound"] and r["smaller_than_dense_gzip"] for r in rows), "a size target is missed"


if __name__ == "__main__":
    main()
