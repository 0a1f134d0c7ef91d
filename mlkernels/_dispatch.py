"""Runtime ISA dispatch: which compiled variant of the kernels this process uses.

Each kernel module is built from one Cython source into up to three variants
(``mlkernels/_isa_baseline``, ``_isa_avx2``, ``_isa_avx512``, see setup.py). At import we
take the best variant that is both built and runnable on this CPU; the environment variable
``MLKERNELS_ISA=baseline|avx2|avx512`` forces one (an impossible request is an ImportError,
never an illegal-instruction crash).

The public modules reach the kernels through ``K``: ``K._linear`` is the ``_linear`` module
of the active variant. ``use_isa`` switches variants (the test suite runs every kernel test
on every variant this way); it is not meant for use while other threads call kernels.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from contextlib import contextmanager
from typing import Iterator

_NOT_BUILT = ("mlkernels: the compiled kernels are missing next to {where}. Install the package "
              "with `pip install .` (or `pip install -e .` to work on the source tree), and run "
              "from a folder where the source tree does not shadow the installed package.")
try:
    from . import _cpu
except ImportError:
    raise ImportError(_NOT_BUILT.format(where=os.path.dirname(__file__))) from None

ISAS = ("baseline", "avx2", "avx512")  # from the lowest to the best


def _is_built(isa: str) -> bool:
    try:
        return importlib.util.find_spec(f"mlkernels._isa_{isa}._linear") is not None
    except ImportError:
        return False


#: Variants this CPU can run and that are built, lowest first.
available_isas: tuple[str, ...] = tuple(i for i in _cpu.supported_isas() if _is_built(i))
if not available_isas:
    raise ImportError(_NOT_BUILT.format(where=os.path.dirname(__file__)))


def _requested_isa() -> str:
    requested = os.environ.get("MLKERNELS_ISA", "").strip().lower()
    if not requested:
        return available_isas[-1]
    if requested not in ISAS:
        raise ImportError(f"MLKERNELS_ISA={requested!r} is not a variant; expected one of {ISAS}")
    if requested not in available_isas:
        raise ImportError(
            f"MLKERNELS_ISA={requested!r} was requested, but this CPU and build run only "
            f"{available_isas}")
    return requested


class _ActiveKernels:
    """``K.<module>`` is that kernel module of the active ISA variant (imported on first use)."""

    isa: str

    def __getattr__(self, module: str):
        # kernel modules are `_<family>`; anything else, dunder names included (doctest and
        # inspect look up `__wrapped__` on every module global), is no attribute
        if not module.startswith("_") or module.startswith("__"):
            raise AttributeError(module)
        loaded = importlib.import_module(f"mlkernels._isa_{self.isa}.{module}")
        setattr(self, module, loaded)  # later lookups are a plain attribute read
        return loaded


K = _ActiveKernels()
K.isa = _requested_isa()


def active_isa() -> str:
    """The ISA variant the kernels run in now.

    Returns
    -------
    str
        "baseline", "avx2" or "avx512": the best variant this CPU runs and the build has,
        unless ``MLKERNELS_ISA`` chose a lower one (``available_isas`` lists them).

    Examples
    --------
    >>> import mlkernels as mk
    >>> mk.active_isa() in mk.available_isas
    True
    """
    return K.isa


def use_isa(isa: str) -> None:
    """Switch every kernel to the given variant (one of ``available_isas``)."""
    if isa not in available_isas:
        raise ValueError(f"ISA variant {isa!r} is not available here; available: {available_isas}")
    K.__dict__.clear()
    K.isa = isa


@contextmanager
def isa(name: str) -> Iterator[None]:
    """Run the block with the kernels of ISA variant ``name``, then switch back."""
    previous = K.isa
    use_isa(name)
    try:
        yield
    finally:
        use_isa(previous)
