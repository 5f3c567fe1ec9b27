"""Runs of a grid in worker processes (``--workers N``), for CPU machines with several cores.

Each worker is a fresh (spawned) process that loads the data once and trains one run at a time
with ``--threads`` threads (default 1): on a small model, N single-threaded runs side by side
use N cores far better than one run with N threads, and stay fast when other programs share
the cores (OpenMP threads spin-wait for each other). The parent alone writes the result files.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from fggp_core.errors import FGGPError

from .config import RunSpec, Settings

__all__ = ["run_in_workers"]

_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (killed, say) stops too, instead of training on for nobody."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _start_worker(settings: Settings, device: str) -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    import torch

    from .data import load_data

    torch.set_num_threads(settings.threads or 1)
    _WORKER.update(settings=settings, data=load_data(settings.data), device=torch.device(device))


def _train(spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    from .experiment import run_experiment
    from .progress import describe

    try:
        return spec, run_experiment(_WORKER["settings"], spec, _WORKER["data"], _WORKER["device"])
    except FGGPError as error:  # re-raised as a plain FGGPError: it crosses the process boundary intact
        raise FGGPError(f"run {describe(spec)} failed: {error}") from None


def run_in_workers(
    settings: Settings, specs: list[RunSpec], device: str, on_done: Callable[[RunSpec, dict[str, Any]], None]
) -> None:
    """Train ``specs`` in ``settings.workers`` processes; call ``on_done`` in this process as each finishes."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        settings.workers, mp_context=context, initializer=_start_worker, initargs=(settings, device)
    )
    try:
        futures = [pool.submit(_train, spec) for spec in specs]
        for future in as_completed(futures):
            on_done(*future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
