"""Peak memory of one call: what the bench reports for cases with ``measure_memory`` (the
fused linear + cross-entropy's point is the (N, V) logits it never allocates)."""
from __future__ import annotations

import gc
import tracemalloc
from typing import Callable, Dict, Optional


def _rss_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory(fn: Callable[[], object]) -> Dict[str, Optional[float]]:
    """Bytes one call of ``fn`` needs at its peak, beyond what was allocated before it:

    * "traced": the peak of tracemalloc (NumPy's array allocations and Python's own; not
      what a library allocates by itself, such as torch's tensors or a kernel's malloc);
    * "rss": the growth of the resident set's high-water mark (everything the process
      touched), on Linux where writing 5 to /proc/self/clear_refs resets that mark; else None.
    """
    gc.collect()
    rss = None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _rss_kib("VmRSS")
    except OSError:
        before = None
    tracemalloc.start()
    try:
        fn()
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if before is not None:
        high = _rss_kib("VmHWM")
        rss = None if high is None else max(0, high - before) * 1024.0
    return {"traced": float(traced), "rss": rss}
