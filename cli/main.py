"""``fggp demo | run | report``: argument parsing, the grid loop, tables and plots.

Exit status: 0 on success, 2 on bad input (a clear ``fggp: error: ...`` on stderr, before any
training where the input can be checked up front), 130 when interrupted (the runs that
finished are in the result files; ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from typing import Any

from fggp_core.errors import FGGPError

from .config import METHODS, MODELS, RunSpec, Settings, grid, load_config
from .report import format_ranking, format_table, markdown_table, merge_runs, summarise
from .results import ResultStore, load_runs, write_atomic

__all__ = ["main", "build_parser", "DEMO"]

DEFAULTS = Settings()
# The demo: digits, the small CNN, dense + FGGP, GMP, Global MP at 90/95/98 %, 5 seeds. A tiny CNN trains
# best on one thread per run with runs side by side, one per core (OpenMP threads spin-wait on busy cores).
DEMO = dict(
    data="digits", model="cnn", methods=["dense", "fggp", "gmp", "global_mp"], sparsities=[0.9, 0.95, 0.98],
    init_sparsities=[0.0], seeds=[0, 1, 2, 3, 4], epochs=12, batch_size=64, lr=0.05, prune_every=10,
    threads=1, workers=min(2, os.cpu_count() or 1),
)  # fmt: skip


def _list(kind: type) -> Any:
    """Parse one list item; commas split too (``--sparsity 0.9,0.95`` = ``--sparsity 0.9 0.95``)."""
    return lambda text: [kind(part) for part in text.split(",") if part]


def _count_or_fraction(text: str) -> int | float:
    number = float(text)
    return int(number) if "." not in text and "e" not in text.lower() else number


def _default(name: str) -> str:
    value = getattr(DEFAULTS, name)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return f"(default: {value})"


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--config",
        metavar="FILE",
        help="JSON file of settings (keys as in examples/configs/); options given here override it",
    )
    add(
        "--data",
        help="'digits', 'cifar10:DIR' (CIFAR-10 python batches) or PATH.npz with x_train, y_train, x_test, y_test "
        + _default("data"),
    )
    add("--model", help=f"one of {', '.join(MODELS)} {_default('model')}")
    add("--methods", nargs="+", type=_list(str), metavar="M", help=f"any of {', '.join(METHODS)} {_default('methods')}")
    add(
        "--sparsity",
        dest="sparsities",
        nargs="+",
        type=_list(float),
        metavar="S",
        help=f"final sparsities in [0, 1) {_default('sparsities')}",
    )
    add(
        "--init-sparsity",
        dest="init_sparsities",
        nargs="+",
        type=_list(float),
        metavar="S",
        help="initial sparsities: 0 = dense-to-sparse, e.g. 0.5 = sparse-to-sparse from a random ERK mask "
        + _default("init_sparsities"),
    )
    add("--seeds", nargs="+", type=_list(int), metavar="N", help=f"seeds, one run each {_default('seeds')}")
    add("--epochs", type=int, help=f"training epochs {_default('epochs')}")
    add("--batch-size", type=int, help=f"mini-batch size {_default('batch_size')}")
    add("--lr", type=float, help=f"initial learning rate of SGD {_default('lr')}")
    add("--momentum", type=float, help=f"SGD momentum {_default('momentum')}")
    add("--nesterov", action=argparse.BooleanOptionalAction, help=f"Nesterov momentum {_default('nesterov')}")
    add("--weight-decay", type=float, help=f"L2 weight decay {_default('weight_decay')}")
    add("--label-smoothing", type=float, help=f"label smoothing of the cross-entropy {_default('label_smoothing')}")
    add(
        "--lr-milestones",
        nargs="+",
        type=_list(float),
        metavar="F",
        help=f"fractions of training where lr is multiplied by --lr-gamma {_default('lr_milestones')}",
    )
    add("--lr-gamma", type=float, help=f"learning-rate decay factor {_default('lr_gamma')}")
    add(
        "--prune-every",
        type=int,
        metavar="STEPS",
        help="optimizer steps between pruning events (default: the pruning span / 20)",
    )
    add(
        "--prune-until",
        type=float,
        metavar="F",
        help=f"fraction of training where the gradual schedule ends {_default('prune_until')}",
    )
    add("--power", type=float, help=f"exponent of the polynomial schedule (3 = cubic) {_default('power')}")
    add("--rate", type=float, help=f"FGGP's fixed rate: the gradient pool is max(k, rate * active) {_default('rate')}")
    add("--scope", choices=("global", "layerwise"), help=f"selection scope of the gradual methods {_default('scope')}")
    add(
        "--dense-first-conv",
        action=argparse.BooleanOptionalAction,
        help=f"keep the first convolution dense {_default('dense_first_conv')}",
    )
    add(
        "--min-keep",
        type=_count_or_fraction,
        metavar="M",
        help="global_mp's minimum threshold: weights every layer keeps (an integer count, or a fraction of all "
        f"prunable weights) {_default('min_keep')}",
    )
    add(
        "--one-shot-at",
        type=float,
        metavar="F",
        help=f"global_mp prunes once at this fraction of training, then fine-tunes {_default('one_shot_at')}",
    )
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help=f"random crop (pad 4) and horizontal flip of training images {_default('augment')}",
    )
    _add_common(parser)


def _add_common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--device",
        choices=("cpu", "cuda", "auto"),
        help=f"where to train; auto = CUDA when present {_default('device')}",
    )
    add("--threads", type=int, help="torch CPU threads (default: torch's choice; the demo uses 1)")
    add(
        "--workers",
        type=int,
        help="runs trained side by side in worker processes, each on --threads threads or 1 "
        "(default: 1; the demo uses up to 2, one per core)",
    )
    add("--resume", action="store_true", help="keep the finished runs in --out and run only the missing ones")
    add("--overwrite", action="store_true", help="replace results already in --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fggp", description="Gradual pruning experiments (FGGP, GMP, Global MP, ...) with PyTorch."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,run,report,inspect,export}")
    demo = commands.add_parser(
        "demo", help="the embedded demo: digits, small CNN, dense/FGGP/GMP/Global MP at 90/95/98 %%, 5 seeds",
        description="Train the small CNN on scikit-learn's 8x8 digits dense and with FGGP, GMP and Global MP "
        "(one-shot + fine-tune, minimum threshold) at 90, 95 and 98 %% sparsity over 5 seeds; print the table "
        "and write results.json, results.csv, table.md and PNG plots. A few minutes on 2 CPU cores. "
        "--methods adds or replaces methods, e.g. --methods dense fggp gmp global_mp global_mp_gupta granet.",
    )  # fmt: skip
    demo.add_argument("--out", default="fggp-demo", help="result folder (default: fggp-demo)")
    demo.add_argument(
        "--methods", nargs="+", type=_list(str), metavar="M",
        help=f"any of {', '.join(METHODS)} (default: dense fggp gmp global_mp)",
    )  # fmt: skip
    _add_common(demo)
    run = commands.add_parser(
        "run", help="one experiment grid (methods x sparsities x starts x seeds)",
        description="Run a grid of pruning experiments and write results.json, results.csv, table.md and plots.",
    )  # fmt: skip
    run.add_argument("--out", default="fggp-results", help="result folder (default: fggp-results)")
    _add_run_options(run)
    report = commands.add_parser(
        "report", help="merge result folders into one table, plots and a per-setting ranking",
        description="Merge the results.json of one or more folders; print the table (mean ± std over seeds) and "
        "the ranking of methods per setting; write the merged results and plots to --out.",
    )  # fmt: skip
    report.add_argument("folders", nargs="+", metavar="DIR", help="folders holding results.json")
    report.add_argument(
        "--out", default="fggp-report", help="folder for the merged results and plots (default: fggp-report)"
    )
    inspect = commands.add_parser(
        "inspect", help="per-tensor table of a checkpoint: shape, entries, sparsity, bytes as stored",
        description="Show every tensor of a .pt/.pth state dict, .keras model, .safetensors file (dense or fggp "
        "sparse) or .npz archive: shape, entries, sparsity (entries that are +0.0, or masked out in an fggp sparse "
        "file) and bytes as stored, with totals.",
    )  # fmt: skip
    inspect.add_argument("file", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="print the table as JSON")
    export = commands.add_parser(
        "export", help="convert a dense checkpoint to the fggp sparse format (.safetensors)",
        description="Write the tensors of a .pt/.pth state dict, .keras model or .npz archive to OUT in the fggp "
        "sparse format (docs/sparse-format.md): each floating tensor that is smaller so as a bit mask plus its "
        "kept values, exactly; the rest dense. Load it with fggp.load_sparse or an adapter's load_sparse.",
    )  # fmt: skip
    export.add_argument("source", metavar="IN")
    export.add_argument("target", metavar="OUT", help="the .safetensors file to write (replaced atomically)")
    return parser


def files_command(args: argparse.Namespace) -> int:
    """``fggp inspect`` and ``fggp export``."""
    import json

    from .files import export_file, format_records, inspect_file

    if args.command == "inspect":
        info = inspect_file(args.file)
        print(json.dumps(info, indent=1) if args.json else format_records(info))
        return 0
    info = export_file(args.source, args.target)
    total = info["totals"]
    print(f"wrote {args.target}: {total['tensors']} tensors ({total['sparse_tensors']} sparse), "
          f"{info['file_bytes']} bytes ({100 * info['file_bytes'] / max(total['dense_bytes'], 1):.1f} % of the "
          f"{total['dense_bytes']} bytes of dense tensor data)")  # fmt: skip
    return 0


def settings_from(args: argparse.Namespace, base: dict[str, Any]) -> Settings:
    """Defaults, then ``base`` (demo or config file), then the options given on the command line."""
    values: dict[str, Any] = dict(base)
    if getattr(args, "config", None):
        values.update(load_config(args.config))
    for field in fields(Settings):
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = [v for part in given for v in part] if isinstance(given, list) else given
    return Settings(**values).validate()


def run_grid(settings: Settings, out: str, *, resume: bool, overwrite: bool) -> int:
    """Train every run of the grid not yet in ``out``; print the table; write files and plots."""
    from .data import load_data

    data = load_data(settings.data)  # data errors come before torch is imported

    import torch

    from .experiment import check_plan, resolve_device, run_experiment
    from .progress import Progress, describe

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input shapes: let cuDNN pick its fastest kernels
    check_plan(settings, data)
    store = ResultStore(out, settings, resume=resume, overwrite=overwrite)
    runs = grid(settings)
    progress = Progress(len(runs))
    todo = []
    for spec in runs:
        if store.done(spec):
            progress.skip(spec)
        else:
            todo.append(spec)

    def done(spec: RunSpec, record: dict[str, Any]) -> None:
        store.add(spec, record)
        progress.finish(spec, record)

    try:
        if settings.workers > 1 and len(todo) > 1:
            from .workers import run_in_workers

            run_in_workers(settings, todo, str(device), done)
        else:
            for spec in todo:
                progress.start(spec, settings.epochs)
                try:
                    record = run_experiment(settings, spec, data, device, on_epoch=progress.epoch)
                except FGGPError as error:
                    raise FGGPError(f"run {describe(spec)} failed: {error}") from error
                done(spec, record)
    finally:
        progress.close()
    return summarise_folder(out, store.runs)


def summarise_folder(out: str, runs: list[dict[str, Any]]) -> int:
    """Print the table and ranking of ``runs``; write ``table.md`` and the plots into ``out``."""
    from .plots import write_plots

    rows = summarise(runs)
    table, ranking = format_table(rows), format_ranking(rows)
    print(table)
    if ranking:
        print("\nRanking per setting (best first; ≈ = within 2 standard errors of the best):")
        print(ranking)
    text = f"{markdown_table(rows)}\n\nRanking per setting (≈ = within 2 standard errors of the best):\n\n"
    text += "".join(f"- {line}\n" for line in ranking.splitlines())
    write_atomic(os.path.join(out, "table.md"), text)
    paths = write_plots(out, rows, runs)
    print(
        f"\nwrote {os.path.join(out, 'results.json')}, results.csv, table.md, {', '.join(map(os.path.basename, paths))}"
    )
    return 0


def report(folders: list[str], out: str) -> int:
    from .results import write_results

    runs = merge_runs([load_runs(folder)[1] for folder in folders])
    if not runs:
        raise FGGPError(f"the folders {folders} hold no finished runs")
    write_results(out, runs, None)
    return summarise_folder(out, runs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fggp`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            return report(args.folders, args.out)
        if args.command in ("inspect", "export"):
            return files_command(args)
        base = DEMO if args.command == "demo" else {}
        settings = settings_from(args, base)
        return run_grid(settings, args.out, resume=args.resume, overwrite=args.overwrite)
    except FGGPError as error:
        print(f"fggp: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", ".")
        print(f"\nfggp: interrupted; finished runs are in {out}/results.json (continue with --resume)", file=sys.stderr)
        return 130
