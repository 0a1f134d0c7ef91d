"""How many threads the kernels use, and how their thread pool waits.

One OpenMP team runs every kernel and, through OpenBLAS's threads callback, the BLAS calls of
``linear`` (``mlkernels/_runtime.h`` says why: two pools that spin while they wait steal each
other's cores). The count a kernel uses, in order of precedence:

* ``with mlkernels.threads(n):`` -- this Python thread, inside the block;
* ``mlkernels.set_num_threads(n)`` -- every thread of the process;
* OpenMP's own count for the calling thread: ``OMP_NUM_THREADS`` when set, else the cores
  this process may run on (CPU affinity, capped by a cgroup CPU quota), and whatever
  ``threadpoolctl.threadpool_limits`` (or ``omp_set_num_threads``) sets -- so threadpoolctl
  sees and limits our kernels as it does any OpenMP library.

Small inputs ignore the count and run serially (no thread wake-up). A child process forked
after the parent ran kernels runs them on one thread (libgomp cannot run a team there).

The wait policy: an idle OpenMP thread spins for a while before it sleeps, so that the next
kernel starts at once. libgomp's default spin (~300,000 iterations, milliseconds here) outlasts
the gaps of a training step but also steals a core from any other pool (NumPy's BLAS, another
library's OpenMP) that runs in the meantime. Unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``
is set, we bound it to ``GOMP_SPINCOUNT=_SPIN_COUNT`` when libgomp loads (it reads the
variable once, then we remove it again so that child processes do not inherit it).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

__all__ = ["get_num_threads", "set_num_threads", "threads"]

#: libgomp spin iterations before an idle thread sleeps (tens of nanoseconds each).
_SPIN_COUNT = 1000


def _mapped_libraries() -> set:
    """The shared libraries mapped into this process (empty where /proc is not there)."""
    try:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps if line.rstrip().endswith((".so", ".1"))
                    or ".so." in line}
    except OSError:
        return set()


def _load_runtime():
    """Import the runtime (which loads the OpenMP library) with our wait policy, unless the
    user set one. Returns the module and a sentence saying which policy holds."""
    user = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    before = _mapped_libraries()
    if not user:
        os.environ["GOMP_SPINCOUNT"] = str(_SPIN_COUNT)
    try:
        from . import _runtime
    finally:
        if not user:
            os.environ.pop("GOMP_SPINCOUNT", None)
    library = _runtime.openmp_library()
    if user:
        policy = "set by the user: " + ", ".join(f"{k}={v}" for k, v in user.items())
    elif not library:
        policy = "no OpenMP (serial kernels)"
    elif os.path.realpath(library) in {os.path.realpath(p) for p in before}:
        policy = f"{library} was loaded before mlkernels: its own settings apply"
    else:
        policy = f"GOMP_SPINCOUNT={_SPIN_COUNT}, set by mlkernels"
    return _runtime, policy


def _cpu_quota() -> Optional[int]:
    """The CPUs a cgroup quota allows (cgroup v2 cpu.max, or v1 cfs quota), None if unlimited."""
    import math
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", None)):
        try:
            with open(path) as f:
                text = f.read()
            if parse is not None:
                quota, period = parse(text)[:2]
            else:
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                    quota, period = text.strip(), f.read().strip()
            if quota in ("max", "-1"):
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError):
            continue
    return None


def _default_num_threads() -> int:
    """The cores this process may run on: CPU affinity, capped by a cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    quota = _cpu_quota()
    return min(n, quota) if quota else n


_runtime, wait_policy = _load_runtime()
if not os.environ.get("OMP_NUM_THREADS", "").strip():
    _runtime.set_default_threads(_default_num_threads())
else:  # OpenMP already took OMP_NUM_THREADS (first value of a nested list)
    _runtime.set_default_threads(_runtime.openmp_max_threads())
blas_shared = os.environ.get("MLKERNELS_SHARE_BLAS_THREADS", "1") != "0" and \
    _runtime.blas_share(True)


def _check(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"the number of threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    return n


def get_num_threads() -> int:
    """The number of threads kernels called from this Python thread may use.

    Returns
    -------
    int
        ``n`` inside ``with threads(n):``; else the ``set_num_threads`` value; else OpenMP's
        count for this thread (``OMP_NUM_THREADS``, the CPU affinity and cgroup quota, or a
        ``threadpoolctl`` limit); 1 in a forked child.

    Examples
    --------
    >>> import mlkernels as mk
    >>> with mk.threads(1):
    ...     mk.get_num_threads()
    1
    """
    return _runtime.num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads kernels may use, in every thread of the process.

    It also sets OpenMP's own count (``omp_set_num_threads``), so ``threadpoolctl`` reports it,
    and the number of jobs OpenBLAS splits ``linear``'s products into.

    Parameters
    ----------
    n : int
        At least 1.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n < 1``.

    Examples
    --------
    >>> import mlkernels as mk
    >>> before = mk.get_num_threads()
    >>> mk.set_num_threads(1); mk.get_num_threads()
    1
    >>> mk.set_num_threads(before)
    """
    _runtime.set_process_threads(_check(n))


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Within the block, kernels called from this Python thread use at most ``n`` threads.

    Other Python threads are not affected; blocks nest (the inner one wins).

    Parameters
    ----------
    n : int
        At least 1.

    Returns
    -------
    contextmanager
        For a ``with`` block.

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n < 1``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.ones(1000, np.float32)
    >>> with mk.threads(1):
    ...     y = mk.gelu(x)      # serial, whatever the process-wide setting
    """
    previous = _runtime.set_local_threads(_check(n))
    try:
        yield
    finally:
        _runtime.set_local_threads(previous)
