"""The ``fggp`` command: ``fggp demo``, ``fggp run``, ``fggp report`` (trains with PyTorch).

Modules, in the order data flows: ``config`` (settings and the grid of runs), ``data`` (digits,
CIFAR-10, .npz), ``models`` (mlp, cnn, vgg19, resnet50), ``experiment`` (one training run with
``fggp.torch.attach``), ``results`` (atomic result files, resume), ``report`` (tables, ranking),
``plots`` (PNG figures), ``progress`` (bars or log lines), ``main`` (argument parsing);
``files``: ``fggp inspect`` and ``fggp export`` (checkpoints and the fggp sparse file).
Importing this package imports neither torch nor matplotlib; the commands do, when they run.
"""

from .main import main

__all__ = ["main"]
