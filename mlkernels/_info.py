"""``mlkernels.info()``: what this installation runs on."""
from __future__ import annotations

import importlib.util
import os
import platform
from typing import Any, Dict

import numpy as np
import scipy

from . import _cpu, _dispatch, _threads
from ._version import __version__


def _blas() -> Dict[str, Any]:
    """The BLAS that scipy.linalg.cython_blas (and so ``linear``) calls."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so that threadpoolctl lists it)
    try:  # threadpoolctl, when present, sees the loaded library and its thread count
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for lib in threadpool_info():
            path = lib.get("filepath", "").replace("\\", "/")
            # scipy's own BLAS (scipy.libs/...); numpy bundles another one (numpy.libs/...)
            if lib.get("user_api") == "blas" and "scipy" in path and "numpy.libs" not in path:
                return {"name": lib.get("internal_api"), "version": lib.get("version"),
                        "threads": lib.get("num_threads"), "source": "threadpoolctl"}
    try:
        blas = scipy.__config__.CONFIG["Build Dependencies"]["blas"]
        return {"name": blas.get("name"), "version": blas.get("version"),
                "threads": _threads._runtime.blas_state()["blas_threads"],
                "source": "scipy build config"}
    except (AttributeError, KeyError, TypeError):  # a SciPy without its build config
        return {"name": "unknown", "version": None, "threads": None, "source": None}


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info() -> Dict[str, Any]:
    """What this installation runs on: version, ISA variant in use and available, threads,
    the OpenMP runtime and its wait policy, the BLAS, the versions of NumPy and SciPy, the CPU.

    Returns
    -------
    dict
        Plain values (JSON-serializable): ``version``, ``isa``, ``isas_available``,
        ``cpu_supports``, ``num_threads``, ``openmp``, ``openmp_library``,
        ``openmp_wait_policy``, ``blas_on_our_threads``, ``blas`` (name, version, threads,
        source), ``numpy``, ``scipy``, ``python``, ``machine``, ``cpu``, ``cores``,
        ``storage16`` (how this variant rounds bfloat16 and float16: the hardware
        conversion or the portable one; ``bfloat16_product``: "vdpbf16ps" when bfloat16
        linear layers multiply on the bfloat16 operands (AVX-512 BF16), else "sgemm on
        widened operands"; and whether ml_dtypes, the optional extra that brings bfloat16,
        is installed).

    Examples
    --------
    >>> import mlkernels as mk
    >>> sorted(mk.info())[:4]
    ['blas', 'blas_on_our_threads', 'cores', 'cpu']
    """
    return {
        "version": __version__,
        "isa": _dispatch.active_isa(),
        "isas_available": list(_dispatch.available_isas),
        "cpu_supports": _cpu.supported_isas(),
        "num_threads": _threads.get_num_threads(),
        "openmp": _cpu.have_openmp(),
        "openmp_library": _threads._runtime.openmp_library() or None,
        "openmp_wait_policy": _threads.wait_policy,
        "blas_on_our_threads": _threads.blas_shared,
        "blas": _blas(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "storage16": dict(_dispatch.K._convert.paths(),
                          bfloat16_product="vdpbf16ps" if _dispatch.K._linear.bf16_product_available()
                          else "sgemm on widened operands",
                          ml_dtypes=importlib.util.find_spec("ml_dtypes") is not None),
    }
