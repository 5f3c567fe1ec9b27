"""``python -m fggp.cli``: the same as the ``fggp`` command."""

import sys

from .main import main

sys.exit(main())
