"""fggp: gradual unstructured pruning (FGGP, GMP, Global MP) for PyTorch, Keras 3 and JAX.

``import fggp`` re-exports the framework-free core (``fggp_core``) and imports no framework.
The adapters are subpackages imported on demand: ``fggp.torch``, ``fggp.keras``, ``fggp.jax``.
"""

from fggp_core import *  # noqa: F403 - the public face re-exports the core's API
from fggp_core import __all__ as _core_all
from fggp_core import __version__
from fggp_core.sparse_file import SparseFileError, load_sparse, save_sparse

__all__ = [*_core_all, "__version__", "SparseFileError", "load_sparse", "save_sparse"]
