"""Time and peak memory of one global FGGP selection / event, each case in a fresh subprocess.

Cases (``--cases``):

- ``core``: ``fggp_core.select`` (NumPy) on NumPy arrays;
- ``torch``: ``fggp.torch.attach(...).prune_now()`` on CPU parameters: the selection (run by
  ``HOST_TORCH``, NumPy's kernels on zero-copy views) and the masks applied to the weights and
  gradients (the pruner then keeps ``~mask`` and an integer AND mask per tensor);
- ``torch-ops``: ``fggp.torch.select`` (``TORCH``: torch ops, what runs on CUDA) on CPU tensors.

Inputs: 8 tensors of ``n/8`` weights and as many gradients in ``--dtypes`` (float32, bfloat16),
all-True bool masks, made in place (no temporaries). Global FGGP, rate 0.5, k = n/10. Memory:
the process's peak resident set after the run minus the resident set with the inputs made (so
interpreter, libraries and inputs are excluded), in bytes per prunable entry (target <= 12).
The 10^9 case needs about 9 GB of inputs (float32) plus the selection's ~6 bytes per entry:
``--sizes 1e9`` runs it only when ``/proc/meminfo`` shows enough available memory (else the case
is reported as skipped). Run it alone on the machine.

    python benchmarks/memory.py [--sizes 1e7] [--dtypes float32 bfloat16] [--cases core torch torch-ops]
    python benchmarks/memory.py --sizes 1e9 --cases core torch --out benchmarks/results/memory_1e9.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = ("core", "torch", "torch-ops")
ITEMSIZE = {"float32": 4, "bfloat16": 2}


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(case: str, n: int, dtype: str) -> dict:
    import torch

    import fggp_core as F

    torch.set_num_threads(1)
    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    sizes = [n // 8] * 7 + [n - 7 * (n // 8)]
    gen = torch.Generator().manual_seed(0)
    weights = [torch.empty(s, dtype=tdtype).normal_(generator=gen) for s in sizes]
    grads = [torch.empty(s, dtype=tdtype).normal_(generator=gen) for s in sizes]
    k = n // 10
    method = F.FGGP(0.5)
    if case == "core":
        from fggp.torch import TORCH

        w = {f"t{i}": TORCH.to_host(t) for i, t in enumerate(weights)}  # zero-copy views (bfloat16: ml_dtypes)
        g = {f"t{i}": TORCH.to_host(t) for i, t in enumerate(grads)}
        masks = {name: torch.ones(s, dtype=torch.bool).numpy() for name, s in zip(w, sizes)}
        base = rss_now()
        start = time.perf_counter()
        F.select(method, w, g, masks, k)
    elif case == "torch-ops":
        from fggp.torch import select

        w = {f"t{i}": t for i, t in enumerate(weights)}
        g = {f"t{i}": t for i, t in enumerate(grads)}
        masks = {name: torch.ones(s, dtype=torch.bool) for name, s in zip(w, sizes)}
        base = rss_now()
        start = time.perf_counter()
        select(method, w, g, masks, k)
    else:
        from torch import nn

        from fggp.torch import attach

        model = nn.ParameterList([nn.Parameter(t) for t in weights])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no state: the pruner's memory alone
        pruner = attach(model, optimizer, method, F.OneShotSchedule(0.1, step=0), prunable=lambda name, p: True)
        for p, gr in zip(model.parameters(), grads):
            p.grad = gr
        base = rss_now()
        start = time.perf_counter()
        report = pruner.prune_now()
        assert report.pruned == round(n * 0.1), report
    seconds = time.perf_counter() - start
    peak = peak_rss()
    return {
        "case": case, "n": n, "dtype": dtype, "k": k, "seconds": round(seconds, 3),
        "peak_extra_bytes_per_entry": round((peak - base) / n, 2),
        "peak_rss_gib": round(peak / 2**30, 2), "inputs_rss_gib": round(base / 2**30, 2),
    }


def run_case(case: str, n: int, dtype: str) -> dict:
    # inputs and masks, ~7 bytes per entry measured at 10^7 (torch: ~1 + 4 more after the event), the interpreter
    need = n * (2 * ITEMSIZE[dtype] + 1 + 8) + 2**30
    if available_bytes() < need:
        return {"case": case, "n": n, "dtype": dtype, "skipped": f"needs ~{need / 2**30:.1f} GiB available, "
                f"{available_bytes() / 2**30:.1f} GiB are"}
    run = subprocess.run(
        [sys.executable, __file__, "--worker", case, str(n), dtype], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["failed"])[-1]
        return {"case": case, "n": n, "dtype": dtype, "failed": tail}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e7])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=list(ITEMSIZE))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case, n, dtype = args.worker
        print(json.dumps(worker(case, int(n), dtype)))
        return {}
    result = {"benchmark": "global FGGP (rate 0.5, k = n/10): time and peak memory beyond the inputs", "rows": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for d in args.dtypes:
            for c in args.cases:
                r = run_case(c, int(n), d)
                note = r.get("skipped") or r.get("failed")
                figures = note or (f"{r['seconds']:.3f} s, {r['peak_extra_bytes_per_entry']:.2f} B/entry beyond "
                                   f"inputs, peak RSS {r['peak_rss_gib']:.2f} GiB")
                print(f"{r['case']:>10} {r['n']:>13,} {r['dtype']:>9}: {figures}", flush=True)
                result["rows"].append(r)
                args.out.write_text(json.dumps(result, indent=2) + "\n")  # after each case: a long run keeps its rows
    return result


if __name__ == "__main__":
    main()
