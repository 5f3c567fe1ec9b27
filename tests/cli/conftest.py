"""The fggp command needs the `cli` extra (torch, scikit-learn, matplotlib, tqdm); without it this folder is skipped."""

import pytest

for module in ("torch", "sklearn", "matplotlib", "tqdm"):
    pytest.importorskip(module)
