"""Hypothesis strategies shared by every backend's property tests.

Inputs are built to stress SPEC's tie rule: quantised values, many exact zeros and -0.0,
float16/bfloat16/float32/float64 (and mixed) tensors, empty and size-1 tensors, k at 0 and at
the whole active set. Occasionally a NaN or infinity is placed (active or not) so the error
path is compared too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

import fggp_core as F

try:  # bfloat16 for NumPy comes with jax/tensorflow (ml_dtypes)
    import ml_dtypes

    BFLOAT16: Any = ml_dtypes.bfloat16
except ImportError:  # pragma: no cover - depends on the environment
    BFLOAT16 = None

DTYPES = ("float16", "float32", "float64") + (("bfloat16",) if BFLOAT16 is not None else ())
SHAPES = [(0,), (1,), (5,), (2, 3), (4, 4), (3, 1, 2), (2, 2, 1, 3), (17,), (6, 7)]
TIED = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 0.25, 3.0, -3.0]


def numpy_dtype(name: str) -> Any:
    return BFLOAT16 if name == "bfloat16" else np.dtype(name)


@dataclass
class Case:
    method: F.Method
    weights: dict[str, np.ndarray]
    grads: dict[str, np.ndarray] | None
    masks: dict[str, np.ndarray]
    k: Any
    scope: str
    step: int | None


def methods(step_known: bool = True) -> st.SearchStrategy[F.Method]:
    rates = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0])
    options = [
        st.just(F.Magnitude()),
        st.just(F.Gradient()),
        st.just(F.Taylor()),
        st.integers(0, 3).map(F.Random),
        rates.map(F.FGGP),
        st.builds(
            F.TwoStage,
            st.sampled_from(F.methods.SCORES),
            st.sampled_from(F.methods.SCORES),
            pool_fraction=rates,
        ),
        st.builds(
            F.TwoStage,
            st.just("magnitude"),
            st.just("gradient"),
            extra_fraction=st.builds(F.CosineRate, rates, st.just(0.005), st.integers(1, 20)),
        ),
        st.one_of(st.integers(0, 4), st.sampled_from([0.05, 0.2])).map(F.GlobalMP),
        st.builds(F.GlobalMP, st.one_of(st.integers(0, 6), st.sampled_from([0.05, 0.2])), rule=st.just("gupta")),
        st.builds(F.GraNet, st.integers(1, 30), st.sampled_from([0.005, 0.1, 0.5, 1.0]), st.sampled_from([0.0, 0.005])),
    ]
    return st.one_of(options)


@st.composite
def tensor(draw, shape: tuple[int, ...], dtype: str, nonfinite: bool) -> np.ndarray:
    size = int(np.prod(shape))
    tied = st.sampled_from(TIED)
    wide = st.floats(-60000, 60000, allow_nan=False, width=16)
    values = draw(st.lists(st.one_of(tied, tied, wide), min_size=size, max_size=size))
    array = np.array(values, dtype=np.float64)
    if nonfinite and size:
        array[draw(st.integers(0, size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array.astype(numpy_dtype(dtype)).reshape(shape)


@st.composite
def cases(draw, dtypes: tuple[str, ...] = DTYPES, allow_nonfinite: bool = True) -> Case:
    """A selection problem (not necessarily valid: k may exceed a GlobalMP reserve, a score may be NaN)."""
    count = draw(st.integers(1, 4))
    shapes = [draw(st.sampled_from(SHAPES)) for _ in range(count)]
    names = [f"layer{i}.weight" for i in range(count)]
    mixed = draw(st.booleans())
    base = draw(st.sampled_from(dtypes))
    dtype = {n: draw(st.sampled_from(dtypes)) if mixed else base for n in names}
    bad = allow_nonfinite and draw(st.integers(0, 9)) == 0
    bad_name = draw(st.sampled_from(names))
    weights = {n: draw(tensor(s, dtype[n], bad and n == bad_name)) for n, s in zip(names, shapes)}
    grads = {n: draw(tensor(s, dtype[n], False)) for n, s in zip(names, shapes)}
    masks = {}
    for n, s in zip(names, shapes):
        size = int(np.prod(s))
        density = draw(st.sampled_from([1.0, 1.0, 0.5, 0.1]))
        flags = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
        masks[n] = (np.array(flags, dtype=np.float64) < density).reshape(s) if size else np.ones(s, dtype=bool)
    method = draw(methods())
    scope = draw(st.sampled_from(F.SCOPES))
    active = {n: int(masks[n].sum()) for n in names}
    if scope == "global":
        k: Any = draw(st.integers(0, sum(active.values())))
    else:
        k = {n: draw(st.integers(0, active[n])) for n in names}
    step = draw(st.integers(0, 25))
    return Case(method, weights, grads if method.needs_grads or draw(st.booleans()) else None, masks, k, scope, step)
