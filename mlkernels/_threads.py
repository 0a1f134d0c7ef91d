"""How many OpenMP threads a kernel may use.

One number for the process (``set_num_threads``), overridable per Python thread with the
``threads(n)`` context manager. The default is ``OMP_NUM_THREADS`` when it is set, else the
number of cores this process may run on. Kernels receive the number as an argument
(``n_threads``) rather than reading OpenMP's global state, so that two Python threads with
different settings never disturb each other. Small inputs ignore it and run serially.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["get_num_threads", "set_num_threads", "threads"]


def _default_num_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
            if n >= 1:
                return n
        except ValueError:
            pass
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


_process_num_threads = _default_num_threads()
_local = threading.local()


def _check(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"the number of threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    return n


def get_num_threads() -> int:
    """The number of threads kernels called from this Python thread may use."""
    n = getattr(_local, "num_threads", None)
    return _process_num_threads if n is None else n


def set_num_threads(n: int) -> None:
    """Set the number of threads kernels may use, for the whole process."""
    global _process_num_threads
    _process_num_threads = _check(n)


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Within the block, kernels called from this Python thread use at most ``n`` threads.

    >>> with mlkernels.threads(1):
    ...     y = mlkernels.gelu(x)      # serial, whatever the process-wide setting
    """
    n = _check(n)
    previous = getattr(_local, "num_threads", None)
    _local.num_threads = n
    try:
        yield
    finally:
        _local.num_threads = previous
