"""NumPy references of every kernel: the oracle the fast kernels are tested against.

Written to be read, not to be fast: float64 throughout (inputs are cast up), one line per
formula where possible, the same names and arguments as the fast functions. One module per
family, mirroring the kernels: ``mlkernels.reference.linear``, ``...activations``, ...
Everything is re-exported here, so ``mlkernels.reference.gelu`` works.
"""
from .linear import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .activations import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
