"""``mlkernels.info()``: what this installation runs on."""
from __future__ import annotations

import platform
from typing import Any, Dict

import numpy as np
import scipy

from . import _cpu, _dispatch, _threads
from ._version import __version__


def _blas() -> Dict[str, Any]:
    """The BLAS that scipy.linalg.cython_blas (and so ``linear``) calls."""
    try:  # threadpoolctl, when present, sees the loaded library and its thread count
        from threadpoolctl import threadpool_info
        import scipy.linalg  # noqa: F401  (loads scipy's BLAS so that it is listed)
        for lib in threadpool_info():
            path = lib.get("filepath", "").replace("\\", "/")
            # scipy's own BLAS (scipy.libs/...); numpy bundles another one (numpy.libs/...)
            if lib.get("user_api") == "blas" and "scipy" in path and "numpy.libs" not in path:
                return {"name": lib.get("internal_api"), "version": lib.get("version"),
                        "threads": lib.get("num_threads"), "source": "threadpoolctl"}
    except ImportError:
        pass
    try:
        blas = scipy.__config__.CONFIG["Build Dependencies"]["blas"]
        return {"name": blas.get("name"), "version": blas.get("version"),
                "threads": None, "source": "scipy build config"}
    except Exception:  # pragma: no cover - very old scipy
        return {"name": "unknown", "version": None, "threads": None, "source": None}


def info() -> Dict[str, Any]:
    """Version, ISA variant in use and available, threads, OpenMP and the BLAS in use."""
    return {
        "version": __version__,
        "isa": _dispatch.active_isa(),
        "isas_available": list(_dispatch.available_isas),
        "cpu_supports": _cpu.supported_isas(),
        "num_threads": _threads.get_num_threads(),
        "openmp": _cpu.have_openmp(),
        "blas": _blas(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
