"""fggp_core: the NumPy-level core of fggp — schedules, methods, deterministic selection, state.

Imports NumPy and nothing heavier. Adapters (``fggp.torch``, ``fggp.keras``, ``fggp.jax``)
translate framework tensors to and from it.
"""

from .backend import FLOAT_DTYPES, NUMPY, Backend, NumpyBackend, score_dtype
from .distribution import DISTRIBUTIONS, SparseStart, layer_sparsities, layer_targets, random_masks
from .errors import ConfigError, FGGPError, InputMismatchError, NonFiniteScoreError, UnreachableTargetError
from .methods import (
    FGGP,
    GlobalMP,
    Gradient,
    GraNet,
    Magnitude,
    Method,
    Random,
    Stage,
    Taylor,
    TwoStage,
    method_from_config,
)
from .pruner import EventReport, EventTable, Pruner, event_table
from .schedule import (
    CallableSchedule,
    CosineRate,
    FixedRate,
    OneShotSchedule,
    PolynomialSchedule,
    Schedule,
    TfmotPolynomialDecay,
    rate_from_config,
    schedule_from_config,
)
from .selection import SCOPES, Status, prune_group, random_scores, select, smallest

__version__ = "0.1.0"

__all__ = [
    "DISTRIBUTIONS",
    "FLOAT_DTYPES",
    "NUMPY",
    "SCOPES",
    "CallableSchedule",
    "ConfigError",
    "CosineRate",
    "Backend",
    "EventReport",
    "EventTable",
    "FGGP",
    "FGGPError",
    "FixedRate",
    "GlobalMP",
    "Gradient",
    "GraNet",
    "InputMismatchError",
    "Magnitude",
    "Method",
    "NonFiniteScoreError",
    "NumpyBackend",
    "OneShotSchedule",
    "PolynomialSchedule",
    "Pruner",
    "Random",
    "Schedule",
    "Stage",
    "Status",
    "SparseStart",
    "Taylor",
    "TfmotPolynomialDecay",
    "TwoStage",
    "UnreachableTargetError",
    "event_table",
    "layer_sparsities",
    "layer_targets",
    "method_from_config",
    "prune_group",
    "random_masks",
    "random_scores",
    "rate_from_config",
    "schedule_from_config",
    "score_dtype",
    "select",
    "smallest",
]
