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
import importlib.machinery as _machinery
import os as _os


def _source_tree_without_kernels() -> None:
    """Python found this package's *source* (a checkout of the repository: the current folder
    or a folder early on sys.path), where no compiled kernels were built. Say so plainly,
    instead of a chain of ImportErrors."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    built = any(name.startswith("_runtime.") and name.endswith(tuple(_machinery.EXTENSION_SUFFIXES))
                for name in _os.listdir(here))
    if built:
        return
    raise ImportError(
        f"mlkernels: Python is importing the source tree at {here}, which has no compiled "
        f"kernels, instead of the installed package. This happens when you run Python from the "
        f"repository's root folder (it comes first on sys.path). Either run from another "
        f"folder, use the `mlkernels` command (`mlkernels bench`, `mlkernels info`) and plain "
        f"`pytest`, which import the installed package, or, to work on this tree, build it in "
        f"place with `pip install -e .`.") from None


_source_tree_without_kernels()

from ._version import __version__  # noqa: E402
from ._threads import get_num_threads, set_num_threads, threads  # noqa: E402
from ._dispatch import active_isa, available_isas  # noqa: E402
from .linear import linear, linear_backward
from .activations import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _loss_all
from .attention import *  # noqa: F401,F403
from .attention import __all__ as _attention_all
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
    *_attention_all,
    "dropout", "dropout_backward", "embedding", "embedding_backward",
    "clip_grad_norm_", "get_total_norm", "linear_cross_entropy",
    "linear_cross_entropy_backward", "linear_cross_entropy_with_grad",
]
