"""The thread runtime (mlkernels/_runtime.h, _threads.py): who decides the thread count,
OpenBLAS on our team, fork safety, the wait policy, and whole training steps that allocate
nothing and match PyTorch."""
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import tracemalloc

import numpy as np
import pytest

import mlkernels as mk
from mlkernels import _threads, _train
from mlkernels import reference as ref
from mlkernels.testing import assert_close

runtime = _threads._runtime
#: an empty folder for child interpreters: in the repository's root the source tree would
#: shadow the package, and a shared folder such as /tmp may hold stray modules
NEUTRAL = tempfile.mkdtemp(prefix="mlkernels-neutral-")


def _python(code: str, **env) -> str:
    """Run code in a fresh interpreter (a new libgomp) and return what it prints."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    environ.update(env)
    # (from a neutral folder: in the repository root the source tree would shadow the package)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, check=True, timeout=120,
                          cwd=NEUTRAL).stdout.strip()


# ------------------------------------------------------------------ the thread count

def test_threads_overrides_in_this_thread_only_and_nests():
    outer = mk.get_num_threads()
    seen = {}

    def other():
        seen["other"] = mk.get_num_threads()

    with mk.threads(1):
        assert mk.get_num_threads() == 1
        with mk.threads(3):
            assert mk.get_num_threads() == 3
        assert mk.get_num_threads() == 1
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert mk.get_num_threads() == outer
    assert seen["other"] == outer          # another Python thread keeps the process count


def test_set_num_threads_reaches_every_thread():
    before = mk.get_num_threads()
    seen = {}

    def other():
        seen["other"] = mk.get_num_threads()
    try:
        mk.set_num_threads(1)
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert mk.get_num_threads() == 1 and seen["other"] == 1
    finally:
        mk.set_num_threads(before)
    assert mk.get_num_threads() == before


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("2", TypeError)])
def test_bad_thread_counts_are_refused(bad, error):
    before = mk.get_num_threads()
    with pytest.raises(error, match="number of threads"):
        mk.set_num_threads(bad)
    with pytest.raises(error, match="number of threads"):
        with mk.threads(bad):
            pass
    assert mk.get_num_threads() == before


def test_omp_num_threads_is_the_default():
    assert _python("import mlkernels as mk; print(mk.get_num_threads())",
                   OMP_NUM_THREADS="1") == "1"
    assert _python("import mlkernels as mk; print(mk.get_num_threads())",
                   OMP_NUM_THREADS="3") == "3"


def test_the_default_is_the_cores_this_process_may_use():
    expected = _threads._default_num_threads()
    assert _python("import mlkernels as mk; print(mk.get_num_threads())") == str(expected)
    assert expected <= len(os.sched_getaffinity(0))


def test_threadpoolctl_sees_and_limits_our_kernels():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    if not runtime.openmp_library():
        pytest.skip("built without OpenMP")
    ours = os.path.realpath(runtime.openmp_library())
    libs = [lib for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "openmp" and os.path.realpath(lib["filepath"]) == ours]
    assert libs, "threadpoolctl does not list the OpenMP runtime of our kernels"
    before = mk.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert mk.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal(1 << 18).astype(np.float32)
        assert_close(mk.gelu(x), ref.gelu(x), np.float32)
    assert mk.get_num_threads() == before


# ------------------------------------------------------------------ OpenBLAS on our team

def test_linear_runs_openblas_single_threaded_on_our_team():
    state = runtime.blas_state()
    if not state["callback_found"]:
        pytest.skip("this SciPy's OpenBLAS has no threads callback (OpenBLAS < 0.3.27)")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 200)).astype(np.float32)
    w = rng.standard_normal((400, 200)).astype(np.float32)
    b = rng.standard_normal(400).astype(np.float32)
    y2 = mk.linear(x, w, b)
    with mk.threads(1):
        y1 = mk.linear(x, w, b)
    assert runtime.blas_state()["blas_threads"] == 1
    # the blocks of two threads and the one block of one thread sum each element alike
    assert_close(y2, y1, np.float32)
    assert_close(y2, x.astype(np.float64) @ w.T.astype(np.float64) + b, np.float32,
                 rtol=1e-5, atol=1e-4)


def test_someone_elses_threaded_openblas_call_runs_on_our_team():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    from scipy.linalg import blas
    state = runtime.blas_state()
    if not state["shared"] or (os.cpu_count() or 1) < 2:
        pytest.skip("no OpenBLAS threads callback, or one core")
    a = np.asfortranarray(np.random.default_rng(2).standard_normal((600, 600)))
    before = runtime.blas_state()["jobs_on_team"]
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        c = blas.dgemm(1.0, a, a)
    assert runtime.blas_state()["jobs_on_team"] > before
    np.testing.assert_allclose(c, a @ a, rtol=1e-12, atol=1e-10)
    mk.linear(np.ones((2, 3)), np.ones((4, 3)))          # and we take it back to one thread
    assert runtime.blas_state()["blas_threads"] == 1


# ------------------------------------------------------------------ fork

def _in_forked_child(queue):
    x = np.linspace(-4, 4, 1 << 20).astype(np.float32)
    y = mk.gelu(x)
    queue.put((mk.get_num_threads(), runtime.forked_child(),
               float(np.abs(y - ref.gelu(x)).max())))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_runs_kernels_on_one_thread_instead_of_hanging():
    mk.gelu(np.ones(1 << 20, np.float32))            # the parent's team exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_forked_child, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("a kernel hung in a forked child")
    threads, forked, err = queue.get(timeout=5)
    assert (threads, forked) == (1, True) and err < 1e-5
    assert not runtime.forked_child()


# ------------------------------------------------------------------ the wait policy

def test_wait_policy_is_bounded_and_not_leaked_to_children():
    out = _python("import os, mlkernels._threads as t; "
                  "print(t.wait_policy); print(os.environ.get('GOMP_SPINCOUNT'))")
    policy, leaked = out.splitlines()
    if "no OpenMP" in policy:
        pytest.skip("built without OpenMP")
    assert f"GOMP_SPINCOUNT={_threads._SPIN_COUNT}" in policy and leaked == "None"


def test_the_users_wait_policy_wins():
    out = _python("import mlkernels._threads as t; print(t.wait_policy)",
                  OMP_WAIT_POLICY="passive")
    assert out == "set by the user: OMP_WAIT_POLICY=passive"


# ------------------------------------------------------------------ whole training steps

def test_a_steady_training_step_allocates_nothing():
    dims, n = (784, 1024, 1024, 10), 256
    x, y = _train.batch(dims, n)
    step = _train.mlkernels_step(_train.mlp(dims), x, y)
    step()
    step()                                    # warm-up: every layer has its arrays
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - start <= 64 * 1024, f"a step raised the tracemalloc peak by {peak - start} B"


def test_a_training_step_matches_the_reference_backend():
    dims, n = (12, 16, 16, 5), 8
    x, y = _train.batch(dims, n, np.float64)
    fast = _train.mlkernels_step(_train.mlp(dims, np.float64), x, y)
    slow = _train.reference_step(_train.mlp(dims, np.float64), x, y)
    for _ in range(10):
        a, b = fast(), slow()
        assert abs(a - b) <= 1e-10 * abs(b)


def test_a_training_step_matches_pytorch_in_float64():
    pytest.importorskip("torch", reason="PyTorch is not installed (it is only a comparison peer)")
    dims, n = (20, 32, 32, 7), 16
    x, y = _train.batch(dims, n, np.float64)
    ours = _train.mlkernels_step(_train.mlp(dims, np.float64), x, y)
    twin = _train.torch_step(_train.mlp(dims, np.float64), x, y)
    for _ in range(10):
        a, b = ours(), twin()
        assert abs(a - b) <= 1e-9 * abs(b), (a, b)
