"""Keras tests run under the process's KERAS_BACKEND; skipped with a reason if keras is absent."""

import pytest

keras = pytest.importorskip("keras")
