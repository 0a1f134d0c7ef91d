"""Threads, leaks and scale, across every kernel in the spec table."""
import gc
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest

import mlkernels as mk
from mlkernels.specs import SPECS, by_family, families
from mlkernels.testing import copy_args


def _numel(shape):
    """Elements a spec "shape" describes (a shape, or a tuple of shapes for lists of arrays)."""
    if all(isinstance(d, (int, np.integer)) for d in shape):
        return int(np.prod(shape))
    return sum(_numel(s) for s in shape)


def _smallest_args(spec, seed, dtype=np.float32):
    shapes = sorted(spec.shapes, key=lambda s: (_numel(s) == 0, _numel(s)))
    return spec.make_args(np.random.default_rng(seed), np.dtype(dtype), shapes[0])


def _run(spec, args, kwargs):
    """The spec's outputs as arrays (copies of arguments, so in-place kernels can repeat)."""
    args = copy_args(args)
    return [np.array(r, copy=True) for r in spec.results(spec.fast(*args, **kwargs))]


def test_thread_stress_matches_single_threaded():
    """8 Python threads call every kernel on their own data (OpenMP inside) for ~3 s: every
    result equals the one computed before, alone."""
    names = sorted(SPECS)
    inputs = {(n, t): _smallest_args(SPECS[n], seed=t) for n in names for t in range(8)}
    # mid-sized inputs too, so that OpenMP regions open inside the Python threads
    for n in names:
        shapes = sorted(SPECS[n].shapes, key=_numel)
        inputs[(n, "mid")] = SPECS[n].make_args(np.random.default_rng(99), np.dtype(np.float32),
                                                shapes[-1])
    expected = {key: _run(SPECS[key[0]], *inputs[key]) for key in inputs}
    failures, counts = [], [0] * 8
    deadline = time.perf_counter() + 3.0

    def worker(t):
        rng = np.random.default_rng(t)
        while time.perf_counter() < deadline and not failures:
            n = names[rng.integers(len(names))]
            key = (n, t) if rng.random() < 0.7 else (n, "mid")
            try:
                got = _run(SPECS[n], *inputs[key])
                for g, e in zip(got, expected[key]):
                    if not np.array_equal(g, e, equal_nan=True):
                        failures.append(f"{key}: result differs under threads")
            except Exception as e:  # pragma: no cover - reported below
                failures.append(f"{key}: {e!r}")
            counts[t] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures, failures[:5]
    assert sum(counts) > 8 * len(names) // 4, counts


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("family", families())
def test_memory_stays_flat_over_100k_calls(family):
    """100,000 calls per family (split over its kernels, small inputs): neither the process
    RSS nor the memory traced by tracemalloc grows."""
    specs = [s for s in by_family(family)]
    calls = 100_000 // len(specs)
    prepared = [(s, _smallest_args(s, seed=0)) for s in specs]
    for s, (args, kwargs) in prepared:   # warm up: lazy imports, caches, first allocations
        for _ in range(50):
            _run(s, args, kwargs)
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    for s, (args, kwargs) in prepared:
        for _ in range(calls):
            _run(s, args, kwargs)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    rss = _rss_bytes() - rss0
    assert traced < 256 * 1024, f"{family}: tracemalloc grew by {traced} bytes"
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return   # under .ci/sanitize: ASan keeps freed memory in quarantine, RSS says nothing
    assert rss < 8 * 1024 * 1024, f"{family}: RSS grew by {rss} bytes"


def _available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


BIG = 2**31 + 8


@pytest.mark.skipif(not hasattr(mk, "relu"), reason="relu is not part of this build")
@pytest.mark.skipif(_available_memory() < 12 * 2**30,
                    reason="needs ~9 GiB free memory for 2**31 + 8 float32 values")
def test_more_than_2_31_elements_are_indexed_correctly():
    """relu in place over 2**31 + 8 float32 values (8 GiB): the elements past 2**31 are
    reached (a 32-bit index would wrap and miss or corrupt them)."""
    x = np.full(BIG, -1.0, np.float32)
    x[::4096] = 3.0
    x[-8:] = [-1, 2, -3, 4, -5, 6, -7, 8]
    mk.relu(x, out=x)
    assert np.array_equal(x[-8:], [0, 2, 0, 4, 0, 6, 0, 8])
    below = x[2**31 - 8192: 2**31]            # the last elements a 32-bit index reaches
    assert below.max() == 3.0 and below.min() == 0.0 and (below == 3.0).sum() == 2
    assert x[:4096 * 8].max() == 3.0 and (x[1:4096] == 0).all()
