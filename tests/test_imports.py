"""Importing fggp or fggp_core imports no framework: adapters import theirs on demand."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "optax", "flax", "transformers", "lightning")


def test_importing_fggp_imports_no_framework():
    code = (
        "import sys, fggp, fggp_core; "
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing fggp imported {out.stdout.strip()}"


def test_fggp_re_exports_the_core_api():
    import fggp
    import fggp_core

    assert fggp.select is fggp_core.select and fggp.FGGP is fggp_core.FGGP
    assert set(fggp_core.__all__) <= set(fggp.__all__)
