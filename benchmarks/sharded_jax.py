"""One global FGGP event on params sharded over 2 and 4 simulated CPU devices, against one device.

Per device count: the compiled event's time (best of ``--repeat``), the number and total bytes
of collectives in its compiled HLO, the largest all-gather/all-to-all/collective-permute, and
XLA's per-device temporary memory (``memory_analysis``). For comparison, the whole-array
program (no ``shard_map``, what ``fggp.jax`` compiled before) on the same sharded params.
Each device count runs in its own process (XLA_FLAGS must be set before JAX starts).

    python benchmarks/sharded_jax.py [--entries 4e6] [--devices 2 4] [--out benchmarks/results/sharded_jax.json]
    python benchmarks/sharded_jax.py --entries 5e5 --devices 2 --repeat 1 --time-whole   # the old program's time

Simulated CPU devices share the host's cores: times show the overhead of the per-device
program and its collectives, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(devices: int, entries: int, repeat: int, time_whole: bool) -> dict:
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import fggp_core as F
    from fggp.jax.backend import rate_bits
    from fggp.jax.selection import _compiled
    from fggp.jax.sharded import collectives, layout_of

    assert jax.device_count() == devices, jax.devices()
    rows = 1024
    tensors = max(1, round(entries / (rows * 512)))
    rng = np.random.default_rng(0)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    put = (lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))) if devices > 1 else jax.device_put
    w = [put(rng.standard_normal((rows, 512), dtype=np.float32)) for _ in range(tensors)]
    g = [put(rng.standard_normal((rows, 512), dtype=np.float32)) for _ in range(tensors)]
    m = [put(np.ones((rows, 512), bool)) for _ in range(tensors)]
    n = tensors * rows * 512
    args = (w, g, m, np.array([n // 2], np.int32), rate_bits(0.5), np.int32(1))
    config = json.dumps(F.FGGP(0.5).to_config(), sort_keys=True)
    out = {"devices": devices, "entries": n, "tensors": tensors}
    programs = {"per_device": layout_of([str(i) for i in range(tensors)], w)}
    if devices > 1:
        programs["whole_array"] = None
    for name, layout in programs.items():
        compiled = _compiled(config, "global", layout).lower(*args).compile()
        found = collectives(compiled.as_text())
        times = [float("nan")]
        if name == "whole_array" and not time_whole:
            repeat_here = 0  # minutes per event on simulated devices (44 s at 5e5 entries, 2 devices)
        else:
            jax.block_until_ready(compiled(*args))
            times, repeat_here = [], repeat
        for _ in range(repeat_here):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - start)
        memory = compiled.memory_analysis()
        out[name] = {
            "seconds": min(times),
            "collectives": len(found),
            "collective_bytes": sum(b for *_, b in found),
            "largest_gather_entries": max(
                [e for op, e, _ in found if op in ("all-gather", "all-to-all", "collective-permute")], default=0
            ),
            "temp_bytes_per_device": getattr(memory, "temp_size_in_bytes", None),
            "argument_bytes_per_device": getattr(memory, "argument_size_in_bytes", None),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=float, default=4e6)
    parser.add_argument("--devices", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--time-whole", action="store_true", help="also time the whole-array program (slow)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker is not None:
        print(json.dumps(worker(a.worker, int(a.entries), a.repeat, a.time_whole)))
        return
    results = []
    for d in [1, *a.devices]:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}", "JAX_PLATFORMS": "cpu"}
        run = subprocess.run(
            [sys.executable, __file__, "--worker", str(d), "--entries", str(a.entries), "--repeat", str(a.repeat)]
            + (["--time-whole"] if a.time_whole else []),
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        r = results[-1]
        for name in ("per_device", "whole_array"):
            if name in r:
                x = r[name]
                print(
                    f"{d} device(s) {name:11s}: {x['seconds'] * 1e3:8.1f} ms, {x['collectives']:3d} collectives, "
                    f"{x['collective_bytes']:>10d} bytes, largest gather {x['largest_gather_entries']:>9d} entries, "
                    f"temp {x['temp_bytes_per_device'] / 2**20:7.1f} MiB/device"
                )
    if a.out:
        a.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
