"""mlkernels: compiled kernels for the fundamentals of neural-network training.

NumPy arrays in, NumPy arrays out; names and arguments as in ``torch.nn.functional`` and
``torch.optim``. Every forward has its backward beside it (``gelu`` / ``gelu_backward``);
every kernel is checked against ``mlkernels.reference`` (plain NumPy) and against finite
differences (``mlkernels.testing.gradcheck``).

>>> import numpy as np, mlkernels as mk
>>> x = np.ones((4, 3), np.float32); w = np.ones((2, 3), np.float32)
>>> mk.linear(x, w).shape
(4, 2)
"""
from ._version import __version__
from ._threads import get_num_threads, set_num_threads, threads
from ._dispatch import active_isa, available_isas
from .linear import linear, linear_backward
from .activations import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .dropout import dropout, dropout_backward
from .embedding import embedding, embedding_backward
from .clip import clip_grad_norm_, get_total_norm
from .fused import (linear_cross_entropy, linear_cross_entropy_backward,
                    linear_cross_entropy_with_grad)
from .norm import __all__ as _norm_all
from .activations import __all__ as _activations_all
from . import optim
from ._info import info

__all__ = [
    "__version__", "info", "get_num_threads", "set_num_threads", "threads",
    "active_isa", "available_isas",
    "linear", "linear_backward", "optim", *_activations_all, *_norm_all, *_loss_all,
    "dropout", "dropout_backward", "embedding", "embedding_backward",
    "clip_grad_norm_", "get_total_norm", "linear_cross_entropy",
    "linear_cross_entropy_backward", "linear_cross_entropy_with_grad",
]
