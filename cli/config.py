"""Experiment settings: defaults, config files (JSON), validation, and the grid of runs.

A config file is a JSON object whose keys are the fields of ``Settings`` (unknown keys are
an error); command-line options override it. Fractions of training (``prune_until``,
``one_shot_at``, ``lr_milestones``) are relative to the total number of optimizer steps.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fggp_core.errors import ConfigError

__all__ = ["METHODS", "MODELS", "Settings", "RunSpec", "load_config", "grid", "EXPERIMENT_KEYS"]

MODELS = ("mlp", "cnn", "vgg19", "resnet50")
METHODS = ("dense", "fggp", "gmp", "global_mp", "global_mp_gupta", "granet", "annealed", "gradient", "taylor", "random")
DEVICES = ("cpu", "cuda", "auto")

# Settings that change what a run computes: results made with other values are not resumed.
EXPERIMENT_KEYS = (
    "data", "model", "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "label_smoothing",
    "lr_milestones", "lr_gamma", "prune_every", "prune_until", "power", "rate", "scope", "dense_first_conv",
    "min_keep", "one_shot_at", "augment",
)  # fmt: skip


@dataclass
class Settings:
    """Everything one ``fggp run`` grid needs. Defaults are those of ``fggp run`` without options."""

    data: str = "digits"
    model: str = "cnn"
    methods: list[str] = field(default_factory=lambda: ["dense", "fggp", "gmp", "global_mp"])
    sparsities: list[float] = field(default_factory=lambda: [0.9, 0.95, 0.98])
    init_sparsities: list[float] = field(default_factory=lambda: [0.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: float = 0.1
    prune_every: int | None = None
    prune_until: float = 0.8
    power: float = 3.0
    rate: float = 0.5
    scope: str = "global"
    dense_first_conv: bool = True
    min_keep: float = 0.0005
    one_shot_at: float = 0.5
    augment: bool = False
    device: str = "cpu"
    threads: int | None = None
    workers: int = 1

    def validate(self) -> Settings:
        """Check every field; raise ``ConfigError`` naming the option and the allowed values."""
        if self.model not in MODELS:
            raise ConfigError("--model", self.model, f"must be one of {list(MODELS)}")
        _nonempty_list("--methods", self.methods)
        for method in self.methods:
            if method not in METHODS:
                raise ConfigError("--methods", method, f"each method must be one of {list(METHODS)}")
        for option, values in (("--sparsity", self.sparsities), ("--init-sparsity", self.init_sparsities)):
            _nonempty_list(option, values)
            for value in values:
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
                    raise ConfigError(option, value, "a sparsity must be a number in [0, 1)")
        for init in self.init_sparsities:
            for target in self.sparsities:
                if target < init:
                    raise ConfigError("--sparsity", target, f"must be >= every --init-sparsity (got {init})")
        _nonempty_list("--seeds", self.seeds)
        for seed in self.seeds:
            _integer("--seeds", seed, 0)
        _integer("--epochs", self.epochs, 1)
        _integer("--batch-size", self.batch_size, 1)
        if self.prune_every is not None:
            _integer("--prune-every", self.prune_every, 1)
        for option, value in (("--lr", self.lr), ("--momentum", self.momentum), ("--weight-decay", self.weight_decay)):
            _number(option, value, 0.0, None)
        for option, value in (
            ("--label-smoothing", self.label_smoothing), ("--rate", self.rate), ("--lr-gamma", self.lr_gamma),
            ("--prune-until", self.prune_until), ("--one-shot-at", self.one_shot_at),
        ):  # fmt: skip
            _number(option, value, 0.0, 1.0)
        for milestone in self.lr_milestones:
            _number("--lr-milestones", milestone, 0.0, 1.0)
        _number("--min-keep", self.min_keep, 0.0, None)
        if self.scope not in ("global", "layerwise"):
            raise ConfigError("--scope", self.scope, "must be 'global' or 'layerwise'")
        if self.device not in DEVICES:
            raise ConfigError("--device", self.device, f"must be one of {list(DEVICES)}")
        if self.threads is not None:
            _integer("--threads", self.threads, 1)
        _integer("--workers", self.workers, 1)
        return self

    def experiment(self) -> dict[str, Any]:
        """The settings that decide what a run computes (used to refuse mixing results)."""
        values = asdict(self)
        return {k: values[k] for k in EXPERIMENT_KEYS}


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid. ``sparsity`` is the final target (0 for dense)."""

    method: str
    sparsity: float
    init_sparsity: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}|s={self.sparsity:g}|init={self.init_sparsity:g}|seed={self.seed}"


def grid(settings: Settings) -> list[RunSpec]:
    """Every run, dense first: dense once per seed (dense start only), other methods per setting."""
    runs = []
    if "dense" in settings.methods:
        runs += [RunSpec("dense", 0.0, 0.0, seed) for seed in settings.seeds]
    for init in settings.init_sparsities:
        for sparsity in settings.sparsities:
            for method in settings.methods:
                if method != "dense":
                    runs += [RunSpec(method, float(sparsity), float(init), seed) for seed in settings.seeds]
    return runs


def load_config(path: str) -> dict[str, Any]:
    """Read a JSON config file into a dict of ``Settings`` fields (``ConfigError`` on any problem)."""
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except OSError as error:
        raise ConfigError("--config", path, f"cannot be read: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise ConfigError("--config", path, f"is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ConfigError("--config", path, "must hold a JSON object of settings")
    config.pop("_comment", None)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError("--config", path, f"has unknown keys {unknown}; allowed: {sorted(known)}")
    return config


def _nonempty_list(option: str, values: object) -> None:
    if not isinstance(values, list) or not values:
        raise ConfigError(option, values, "must be a non-empty list")


def _integer(option: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(option, value, f"must be an integer >= {minimum}")


def _number(option: str, value: object, low: float, high: float | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ConfigError(option, value, f"must be a number {allowed}")
