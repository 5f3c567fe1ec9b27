"""Run every benchmark that applies to this machine; write a table (markdown) and JSON of the targets.

    python -m benchmarks [--quick] [--only torch keras ...] [--large] [--readme]

Each benchmark runs in a subprocess (its own memory, its own Keras backend) and writes its
figures to ``benchmarks/results/<name>.json``; this script then reads them and writes
``benchmarks/results/summary.md`` and ``summary.json``: each target with its measured figure
and whether it is met. What runs:

- ``core``: ``bench_core.py``, fggp_core's selection against the unordered floor (10^7; 10^8 too
  in the full run);
- ``torch``: ``bench_torch.py``, between events (CNN and MLP, SGD momentum and AdamW, against
  dense and ``torch.nn.utils.prune``) and events against the core (on CUDA too when there is one);
- ``memory``: ``memory.py``, time and peak memory per entry of the selection and event at 10^7
  (float32, bfloat16); with ``--large`` also at 10^9 (``memory_1e9.json``; ~20 GB, run alone);
- ``keras``: ``bench_keras.py`` on every installed Keras backend (tensorflow, jax, torch);
- ``jax``: ``bench_jax.py`` (on the default JAX device: a GPU when there is one), and every
  other ``benchmarks/jax_*.py`` script found (e.g. ``jax_compile.py``, ``jax_memory.py``),
  with ``--quick`` when the script accepts it.

A script's JSON may carry ``"summary": [{"figure", "measured", "target", "met"}, ...]``: those
rows join the table as they are. ``--readme`` replaces the generated part of README.md's
performance section (between the ``benchmarks:begin``/``end`` markers) with the table.
``--quick`` takes under 5 minutes on a 2-core CPU machine; the full run about 30.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
STEPS = ("core", "torch", "memory", "keras", "jax")
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
USED = ("core", "core_1e9", "torch", "memory", "memory_1e9", "jax", "keras_tensorflow", "keras_jax", "keras_torch")


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        mem_kb = 0
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "gpu": None}
    probe = ("import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
             if has("torch") else None)
    if probe:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
        info["gpu"] = out or None
    return info


def script(name: str, *args: str, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run ``benchmarks/<name>.py`` with ``args`` in a subprocess; its stdout tail, status and time."""
    start = time.perf_counter()
    print(f"== {name} {' '.join(args)}", flush=True)
    try:
        run = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], cwd=ROOT, text=True,
                             capture_output=True, timeout=timeout, env=dict(os.environ, **(env or {})))
        ok, out, err = run.returncode == 0, run.stdout, run.stderr
    except subprocess.TimeoutExpired as e:
        ok, out, err = False, str(e.stdout or ""), f"timed out after {timeout:.0f} s"
    lines = [line for line in out.splitlines() if line.strip()]
    print("\n".join(lines[-25:]), flush=True)
    if not ok:
        print(f"   FAILED: {(err.strip().splitlines() or ['?'])[-1]}", flush=True)
    return {"ok": ok, "seconds": round(time.perf_counter() - start, 1), "tail": lines[-25:],
            "error": None if ok else (err.strip().splitlines() or ["?"])[-1]}


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def power(n: int) -> str:
    return f"10^{round(math.log10(n))}"


def row(area: str, figure: str, measured: str, target: str, met: bool | None) -> dict:
    return {"area": area, "figure": figure, "measured": measured, "target": target, "met": met}


def rows_core(core: dict) -> list[dict]:
    out = []
    for r in core.get("rows", []):
        n = power(r["n"])
        if "time_ratio" in r:
            out.append(row("core", f"global FGGP selection, {n}, vs unordered floor",
                           f"{r['fggp_core_s']:.3f} s, x{r['time_ratio']:.2f}", "<= 1.3x", r["time_ratio"] <= 1.3))
        out.append(row("core", f"selection memory, {n} (tracemalloc)", f"{r['peak_extra_bytes_per_entry']:.1f} B/entry",
                       "<= 12 B/entry", r["peak_extra_bytes_per_entry"] <= 12))
    return out


def rows_torch(t: dict) -> list[dict]:
    out = []
    for r in t.get("between_events", []):
        f, p = r["ratio_to_dense"]["fggp.torch"], r["ratio_to_dense"]["torch.nn.utils.prune"]
        lo, hi = r["ratio_p10_p90"]["fggp.torch"]
        # the control (an identical dense copy) and the hooks' own share say how much of f is noise
        control = r["ratio_to_dense"].get("dense copy")
        extra = "" if control is None else (
            f"; dense copy x{control:.3f}; hooks {100 * r['fggp_hooks_fraction_of_dense_step']:.1f} % of a dense step")
        out.append(row("torch CPU", f"between events, {r['model']}, {r['optimizer']} (x dense)",
                       f"x{f:.3f} [p10-p90 {lo:.3f}-{hi:.3f}]; nn.utils.prune x{p:.3f}{extra}",
                       "<= 1.02x and <= nn.utils.prune", f <= 1.02 and f <= p))
    for r in t.get("events", []):
        n = power(r["prunable_weights"])
        if r["device"] == "cpu" and "ratio_to_core" in r:
            target = n == "10^7"
            out.append(row("torch CPU", f"event, {n} (selection + masks applied) vs core selection",
                           f"{r['event_s']:.3f} s vs {r['core_numpy_select_s']:.3f} s, x{r['ratio_to_core']:.2f}",
                           "<= 1.3x" if target else "-", r["ratio_to_core"] <= 1.3 if target else None))
        elif r["device"] == "cuda":
            target = r["prunable_weights"] >= 10**8 - 10**6
            out.append(row("torch CUDA", f"event, {n}", f"{1e3 * r['event_s']:.1f} ms",
                           "< 100 ms" if target else "-", r["event_s"] < 0.1 if target else None))
    return out


def rows_memory(m: dict, label: str = "") -> list[dict]:
    out = []
    for r in m.get("rows", []):
        n = power(r["n"])
        what = {"core": "fggp_core.select", "torch": "fggp.torch event", "torch-ops": "fggp.torch.select (torch ops)"}
        name = f"{what.get(r['case'], r['case'])}, {n}, {r['dtype']}{label}"
        if "skipped" in r or "failed" in r:
            out.append(row("memory", name, r.get("skipped") or f"failed: {r['failed']}", "<= 12 B/entry", None))
            continue
        out.append(row("memory", name, f"{r['seconds']:.2f} s, {r['peak_extra_bytes_per_entry']:.1f} B/entry, "
                       f"peak RSS {r['peak_rss_gib']:.1f} GiB", "<= 12 B/entry", r["peak_extra_bytes_per_entry"] <= 12))
    return out


def rows_keras(k: dict) -> list[dict]:
    out = []
    for r in k.get("rows", []):
        lo, hi = r["ratio_range"]
        wall = f"; wall x{r['wall_ratio_median']:.3f}" if "wall_ratio_median" in r else ""
        out.append(row(f"keras {k['backend']}", f"between events, {r['model']}, {r['optimizer']} (x plain fit)",
                       f"CPU x{r['ratio_median']:.3f} (pairs {lo:.3f}-{hi:.3f}, fastest x{r['ratio_of_fastest']:.3f}; "
                       f"{r['pairs']} pairs){wall}", "<= 1.05x", r["ratio_median"] <= 1.05))
    return out


def rows_jax(j: dict, gpu: bool) -> list[dict]:
    out = []
    for device, r in j.get("runs", {}).items():
        s = r.get("step_time", {})
        earlier = " (an earlier run on a lent GPU)" if device.startswith("gpu") and not gpu else ""
        if "ratio" in s:
            out.append(row(f"jax {device}", f"between events, {s.get('model', '')} (x inner optimizer){earlier}",
                           f"x{s['ratio']:.3f} (fastest rounds x{s.get('ratio_of_fastest_rounds', float('nan')):.3f})",
                           "<= 1.05x", s["ratio"] <= 1.05))
        donated = (("donated_ratio", "state donated"), ("donated_host_flag_ratio", "state donated, fggp_event="))
        for key, what in donated:
            if key in s:
                out.append(row(f"jax {device}", f"between events, same step, {what} (x donated Adam){earlier}",
                               f"x{s[key]:.3f} (fastest rounds x{s[key + '_of_fastest_rounds']:.3f})",
                               "<= 1.05x", s[key] <= 1.05))
    return out


def rows_summary(name: str, result: dict) -> list[dict]:
    """Rows a script states itself (``"summary"``), e.g. the JAX helper's scripts."""
    rows = result.get("summary") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return []
    return [row(r.get("area", name), str(r.get("figure", "")), str(r.get("measured", "")), str(r.get("target", "-")),
                r.get("met")) for r in rows if isinstance(r, dict)]


def written(path: Path) -> str:
    """When ``path`` was last written, to the minute: its last commit's date while git holds it
    unchanged (a clone's checkout sets every file's mtime to the clone's time), else its mtime."""
    try:
        git = ["git", "-C", str(ROOT)]
        changed = subprocess.run([*git, "status", "--porcelain", "--", str(path)], capture_output=True, text=True)
        dated = subprocess.run([*git, "log", "-1", "--format=%cI", "--", str(path)], capture_output=True, text=True)
        if changed.returncode == 0 and not changed.stdout.strip() and dated.stdout.strip():
            return dated.stdout.strip()[:16]  # ISO 8601, without seconds and offset
    except OSError:  # no git here: the file's own time
        pass
    return datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="minutes")


def markdown(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        f"Measured on {summary['date']} by `{summary['command']}` on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB{', GPU ' + m['gpu'] if m['gpu'] else ', no GPU'}; a shared machine: other processes "
        "ran at the same time, so ratios come from paired, interleaved runs in one process).",
        "",
        "| area | figure | measured | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in summary["rows"]:
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        lines.append(f"| {r['area']} | {r['figure']} | {r['measured']} | {r['target']} | {met} |")
    used = ", ".join(f"{name} ({when})" for name, when in summary["results"].items()
                     if name.split(".")[0] in USED or name.startswith("jax_"))
    lines += ["", f"Result files read (last written): {used}."]
    missed = [r for r in summary["rows"] if r["met"] is False]
    checked = sum(r["met"] is not None for r in summary["rows"])
    lines += ["", f"Targets missed in these results: {len(missed)} of {checked}" + ("." if not missed else ":")]
    lines += [f"- {r['area']}: {r['figure']}: {r['measured']} (target {r['target']})" for r in missed]
    failed = [f"`{name}` ({s['error']})" for name, s in summary["scripts"].items() if not s["ok"]]
    if failed:
        lines += ["", "Scripts that failed or were skipped: " + "; ".join(failed) + "."]
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> bool:
    readme = ROOT / "README.md"
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        print(f"README.md has no {BEGIN} ... {END} block: not updated")
        return False
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, rounds and pairs (< 5 minutes)")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these (the table still reads all results)")
    parser.add_argument("--large", action="store_true", help="also the 10^9 event (core, torch; ~20 GB; run alone)")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md's performance section")
    parser.add_argument("--no-run", action="store_true", help="run nothing: rebuild the table from the results there")
    args = parser.parse_args(argv)
    if args.no_run:
        args.only = []
    quick = ["--quick"] if args.quick else []
    steps = STEPS if args.only is None else args.only
    scripts: dict[str, dict] = {}
    if "core" in steps:
        sizes = ["1e7"] if args.quick else ["1e7", "1e8"]
        scripts["bench_core"] = script("bench_core", "--sizes", *sizes, "--repeat", "3" if args.quick else "5")
    if "torch" in steps and has("torch"):
        scripts["bench_torch"] = script("bench_torch", *quick)
    if "memory" in steps and has("torch"):
        extra = ["--dtypes", "float32", "--cases", "core", "torch"] if args.quick else []
        scripts["memory"] = script("memory", "--sizes", "1e7", *extra)
        if args.large:
            scripts["memory_1e9"] = script("memory", "--sizes", "1e9", "--cases", "core", "torch",
                                           "--out", str(RESULTS / "memory_1e9.json"))
    if "keras" in steps and has("keras"):
        backends = [b for b in ("tensorflow", "jax", "torch") if has(b)]
        scripts["bench_keras"] = script("bench_keras", "--backends", *backends, *quick)
    if "jax" in steps and has("jax") and has("optax"):
        scripts["bench_jax"] = script("bench_jax", *quick)
        for path in sorted(HERE.glob("jax_*.py")):  # the JAX scripts (compile time, memory, ...) as they exist
            if "--quick" in path.read_text():
                scripts[path.stem] = script(path.stem, *quick)
            elif args.quick:  # no quick mode of its own: it may take many minutes
                scripts[path.stem] = {"ok": False, "seconds": 0, "error": "skipped: no --quick mode, full run only"}
            else:
                scripts[path.stem] = script(path.stem)

    rows: list[dict] = []
    info = machine()
    for name, fn in (("core", rows_core), ("torch", rows_torch), ("memory", rows_memory)):
        result = load(name)
        if result:
            rows += fn(result)
    if load("jax"):
        rows += rows_jax(load("jax"), bool(info["gpu"]))
    large = load("memory_1e9")
    if large:
        rows += rows_memory(large)
    for r in (load("core_1e9") or {}).get("rows", []):  # bench_core.py --sizes 1e9 --no-floor, run by hand
        rows.append(row("memory", "fggp_core.select, 10^9, float32 (bench_core.py --no-floor, earlier run)",
                        f"{r['fggp_core_s']:.1f} s, {r['peak_extra_bytes_per_entry']:.1f} B/entry, "
                        f"peak RSS {r['peak_rss_gib']:.1f} GiB", "<= 12 B/entry",
                        r["peak_extra_bytes_per_entry"] <= 12))
    for backend in ("tensorflow", "jax", "torch"):
        result = load(f"keras_{backend}")
        if result and "rows" in result:
            rows += rows_keras(result)
    for path in sorted(RESULTS.glob("jax_*.json")):
        rows += rows_summary(path.stem, json.loads(path.read_text()))
    command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
    summary = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "machine": info,
        "scripts": {n: {k: v for k, v in s.items() if k != "tail"} for n, s in scripts.items()},
        "rows": rows,
        "results": {p.name: written(p) for p in sorted(RESULTS.glob("*.json")) if p.name != "summary.json"},
    }
    text = markdown(summary)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(text)
    print("\n" + text)
    if args.readme:
        update_readme(text)
    return summary


if __name__ == "__main__":
    main()
