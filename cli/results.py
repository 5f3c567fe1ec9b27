"""Result files of a run folder: ``results.json`` (everything) and ``results.csv`` (one row a run).

Both are rewritten after every finished run, each atomically (a temporary file in the same
folder, flushed and fsynced, then ``os.replace``): an interrupted grid leaves complete files
holding exactly the runs that finished, and ``--resume`` skips those runs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict
from typing import Any

from fggp_core.errors import ConfigError

from .config import RunSpec, Settings

__all__ = ["RESULTS_JSON", "RESULTS_CSV", "CSV_COLUMNS", "ResultStore", "write_atomic", "load_runs", "write_results"]

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
FORMAT = "fggp-results/1"
CSV_COLUMNS = (
    "data", "model", "method", "sparsity_target", "init_sparsity", "seed", "accuracy", "sparsity",
    "pruned", "prunable", "time_s", "epochs", "steps", "device",
)  # fmt: skip


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def csv_text(runs: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(runs)
    return buffer.getvalue()


def write_results(folder: str, runs: list[dict[str, Any]], settings: dict[str, Any] | None) -> None:
    """Write ``results.json`` and ``results.csv`` for ``runs`` into ``folder`` (atomically each)."""
    os.makedirs(folder, exist_ok=True)
    document = {"format": FORMAT, "settings": settings, "runs": runs}
    write_atomic(os.path.join(folder, RESULTS_JSON), json.dumps(document, indent=1) + "\n")
    write_atomic(os.path.join(folder, RESULTS_CSV), csv_text(runs))


def load_runs(folder: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The settings and run records of ``folder/results.json`` (``ConfigError`` when unreadable)."""
    path = os.path.join(folder, RESULTS_JSON)
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as error:
        raise ConfigError(
            "results folder", folder, f"has no readable {RESULTS_JSON}: {error.strerror or error}"
        ) from error
    except json.JSONDecodeError as error:
        raise ConfigError("results folder", folder, f"{RESULTS_JSON} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("runs"), list):
        raise ConfigError("results folder", folder, f"{RESULTS_JSON} is not an fggp results file ({FORMAT})")
    return document.get("settings"), document["runs"]


class ResultStore:
    """The result files of one ``fggp run`` folder, updated after every run.

    ``resume=False`` refuses a folder that already holds results (unless ``overwrite``);
    ``resume=True`` keeps its finished runs, provided they were made with the same
    experiment settings (``Settings.experiment()``).
    """

    def __init__(self, folder: str, settings: Settings, *, resume: bool = False, overwrite: bool = False) -> None:
        self.folder = folder
        self.settings = settings
        self.runs: list[dict[str, Any]] = []
        exists = os.path.exists(os.path.join(folder, RESULTS_JSON))
        if exists and resume:
            saved, runs = load_runs(folder)
            mine = settings.experiment()
            theirs = (saved or {}).get("experiment", {})
            differ = sorted(k for k in mine if theirs.get(k) != mine[k])
            if differ:
                raise ConfigError(
                    "--resume", folder,
                    f"its results were made with other settings {differ} "
                    f"({', '.join(f'{k}={theirs.get(k)!r}' for k in differ)}); use another --out",
                )  # fmt: skip
            self.runs = runs
        elif exists and not overwrite:
            raise ConfigError(
                "--out", folder, f"already holds {RESULTS_JSON}; pass --resume to continue or --overwrite"
            )
        os.makedirs(folder, exist_ok=True)

    def done(self, spec: RunSpec) -> bool:
        return any(run.get("key") == spec.key for run in self.runs)

    def add(self, spec: RunSpec, record: dict[str, Any]) -> None:
        """Append a finished run and rewrite both files."""
        settings = self.settings
        record = {"key": spec.key, "data": settings.data, "model": settings.model, "epochs": settings.epochs, **record}
        self.runs = [run for run in self.runs if run.get("key") != spec.key] + [record]
        self.save()

    def save(self) -> None:
        write_results(self.folder, self.runs, {**asdict(self.settings), "experiment": self.settings.experiment()})
