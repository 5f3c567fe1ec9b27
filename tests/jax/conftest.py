"""The JAX adapter's tests need jax and optax; without them the folder is skipped, with the reason."""

import pytest

pytest.importorskip("jax", reason="the JAX adapter's tests need jax (pip install 'fggp[jax]')")
pytest.importorskip("optax", reason="the JAX adapter's tests need optax (pip install 'fggp[jax]')")
