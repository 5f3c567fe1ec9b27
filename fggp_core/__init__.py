"""fggp_core: the NumPy-level core of fggp — schedules, methods, deterministic selection, state.

Imports NumPy and nothing heavier. Adapters (``fggp.torch``, ``fggp.keras``, ``fggp.jax``)
translate framework tensors to and from it.
"""

from .distribution import DISTRIBUTIONS, SparseStart, layer_sparsities, layer_targets, random_masks
from .errors import ConfigError, FGGPError, InputMismatchError, NonFiniteScoreError, UnreachableTargetError
from .executor import FLOAT_DTYPES, NUMPY, Executor, NumpyExecutor, score_dtype
from .methods import FGGP, GlobalMP, Gradient, Magnitude, Method, Random, Taylor, TwoStage, method_from_config
from .pruner import EventReport, Pruner
from .schedule import (
    CallableSchedule,
    CosineRate,
    FixedRate,
    OneShotSchedule,
    PolynomialSchedule,
    Schedule,
    rate_from_config,
    schedule_from_config,
)
from .selection import SCOPES, prune_group, random_scores, select, smallest

__version__ = "0.1.0"

__all__ = [
    "DISTRIBUTIONS",
    "FLOAT_DTYPES",
    "NUMPY",
    "SCOPES",
    "CallableSchedule",
    "ConfigError",
    "CosineRate",
    "EventReport",
    "Executor",
    "FGGP",
    "FGGPError",
    "FixedRate",
    "GlobalMP",
    "Gradient",
    "InputMismatchError",
    "Magnitude",
    "Method",
    "NonFiniteScoreError",
    "NumpyExecutor",
    "OneShotSchedule",
    "PolynomialSchedule",
    "Pruner",
    "Random",
    "Schedule",
    "SparseStart",
    "Taylor",
    "TwoStage",
    "UnreachableTargetError",
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
