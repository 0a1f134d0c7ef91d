"""mlkernels.distributed: the MPI helpers (the 2-rank run as a subprocess under mpiexec,
skipped where mpi4py or mpiexec is missing), sharding, the flat gradient buffer, and the Dask
recipe (skipped without dask)."""
import os
import shutil
import subprocess
import tempfile
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

import mlkernels as mk
from mlkernels import distributed as dist, nn
from mlkernels._train import mlp

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- MPI, in separate processes

def _mpiexec():
    """mpiexec next to this Python (the mpich wheel puts it in the venv's bin/), else on PATH;
    None when it or mpi4py is missing."""
    try:
        import mpi4py  # noqa: F401  (only whether it is there: MPI is not started here)
    except ImportError:
        return None
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def _env():
    """This environment, with the mlkernels under test first on the path."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(mk.__file__)),
                    os.environ.get("PYTHONPATH")) if p))


#: an empty folder to start child interpreters in: with -m, Python puts the current folder
#: first on sys.path, and in the repository's root the source tree would shadow the package
NEUTRAL = tempfile.mkdtemp(prefix="mlkernels-neutral-")


def _run_mpi(args, timeout):
    return subprocess.run([_mpiexec(), "-n", "2", sys.executable, *args], env=_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd=NEUTRAL)


@pytest.fixture(scope="module")
def mpi():
    """Skip unless two MPI processes start and meet here."""
    if _mpiexec() is None:
        pytest.skip('mpi4py or mpiexec missing: pip install "mlkernels[dist]"')
    try:
        probe = _run_mpi(["-c", "from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"], 60)
    except subprocess.TimeoutExpired:
        pytest.skip("MPI cannot start here: two processes did not meet within 60 s")
    if probe.returncode != 0:
        pytest.skip(f"MPI cannot start here: {probe.stderr.strip()[-300:]}")


def test_two_ranks_train_like_one_process_on_the_whole_batch(mpi):
    """tests/mpi_equivalence.py under mpiexec -n 2 (it says what it checks)."""
    run = _run_mpi(["-m", "mpi4py", os.path.join(HERE, "mpi_equivalence.py")], 300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mpi equivalence: ok" in run.stdout


def test_the_example_trains_the_same_on_two_ranks_as_on_one(mpi):
    """examples/mlp_distributed.py: the loss curve of 2 ranks on half-batches is that of one
    process on the whole batches (float32: to the printed 4 decimals)."""
    example = os.path.join(os.path.dirname(HERE), "examples", "mlp_distributed.py")
    if not os.path.exists(example):
        pytest.skip("the examples are not part of an installed package")
    args = [example, "--steps", "41", "--hidden", "32"]
    two = _run_mpi(args, 300)
    assert two.returncode == 0, two.stdout + two.stderr
    one = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, env=_env(), cwd=NEUTRAL)
    assert one.returncode == 0, one.stdout + one.stderr
    curve = [line for line in two.stdout.splitlines() if "loss" in line]
    assert len(curve) == 2 and "2 rank(s)" in two.stdout and "1 rank(s)" in one.stdout
    assert curve == [line for line in one.stdout.splitlines() if "loss" in line]


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)    # import mpi4py -> ImportError
    for call in (dist.world, lambda: dist.shard(10), lambda: dist.set_threads_per_rank(),
                 lambda: dist.allreduce_grads(np.zeros(3)),
                 lambda: dist.broadcast_parameters(nn.Linear(2, 2))):
        with pytest.raises(ImportError, match=r'pip install "mlkernels\[dist\]"'):
            call()


# ---------------------------------------------------------------- sharding

@given(n=st.integers(0, 200), size=st.integers(1, 9), strided=st.booleans())
def test_shards_cover_every_item_once_and_differ_by_at_most_one(n, size, strided):
    shares = [list(range(n))[dist.shard(n, r, size, strided=strided)] for r in range(size)]
    assert sorted(sum(shares, [])) == list(range(n))
    lengths = [len(s) for s in shares]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)      # the first ranks take the extra
    if not strided:
        assert sum(shares, []) == list(range(n))         # in order, rank after rank
    assert shares == [list(range(n))[dist.shard(n, r, size, strided=strided)]
                      for r in range(size)]              # deterministic


def test_shard_matches_array_split_and_is_a_view():
    x = np.arange(23.0)
    for r, part in enumerate(np.array_split(x, 4)):
        view = x[dist.shard(len(x), r, 4)]
        np.testing.assert_array_equal(view, part)
        assert np.shares_memory(view, x)


@pytest.mark.parametrize("args, error, match", [
    ((10, 2, 2), ValueError, "rank=2"), ((10, -1, 2), ValueError, "rank=-1"),
    ((10, 0, 0), ValueError, "size=0"), ((-1, 0, 1), ValueError, "n_items=-1"),
    ((10.0, 0, 1), TypeError, "n_items"), ((10, True, 2), TypeError, "rank"),
    ((10, 0, "2"), TypeError, "size"),
])
def test_shard_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        dist.shard(*args)


# ---------------------------------------------------------------- the flat gradient buffer

def _train_step(model, x, y):
    logits = model.forward(x)
    model.backward(mk.cross_entropy_backward(np.ones((), x.dtype), logits, y),
                   need_input_grad=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_grads_holds_every_gradient_and_the_backward_writes_there(dtype):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)).astype(dtype), rng.integers(0, 3, 8)
    model, twin = mlp((6, 7, 3), dtype), mlp((6, 7, 3), dtype)
    _train_step(model, x, y)
    before = np.concatenate([g.ravel() for g in model.grads()])
    flat = dist.flat_grads(model)
    assert flat.dtype == dtype and flat.ndim == 1 and flat.flags.c_contiguous
    np.testing.assert_array_equal(flat, before)                  # values kept
    assert all(g.base is flat for g in model.grads())
    assert dist.flat_grads(model) is flat                        # same buffer again
    flat[...] = np.nan
    _train_step(model, x, y)
    _train_step(twin, x, y)
    np.testing.assert_array_equal(flat, np.concatenate([g.ravel() for g in twin.grads()]))


def test_flat_grads_refuses_what_one_buffer_cannot_hold():
    with pytest.raises(TypeError, match="mlkernels.nn.Module"):
        dist.flat_grads([np.zeros(3)])
    with pytest.raises(ValueError, match="no parameters"):
        dist.flat_grads(nn.Sequential(nn.GELU()))
    mixed = nn.Sequential(nn.Linear(2, 3, dtype=np.float32), nn.Linear(3, 1, dtype=np.float64))
    grads = mixed.grads()
    with pytest.raises(ValueError, match="float32, float64"):
        dist.flat_grads(mixed)
    with pytest.raises(ValueError, match="float64"):
        dist.flat_grads(nn.Linear(2, 3, dtype=np.float32), dtype=np.float64)
    assert all(a is b for a, b in zip(mixed.grads(), grads))    # nothing was moved


# ---------------------------------------------------------------- with_threads (Dask's tasks)

def test_with_threads_sets_the_count_in_the_calling_thread_only():
    seen = {}

    def record(name):
        seen[name] = mk.get_num_threads()
        return name

    wrapped = dist.with_threads(record, 1)
    assert wrapped.__name__ == "record"
    t = threading.Thread(target=wrapped, args=("worker",))
    t.start()
    t.join()
    record("main")
    assert seen["worker"] == 1
    assert seen["main"] == mk.get_num_threads()
    with mk.threads(1):
        assert dist.with_threads(record, 3)("inner") == "inner" and seen["inner"] == 3
    with pytest.raises(TypeError, match="callable"):
        dist.with_threads(3)
    with pytest.raises(ValueError, match=">= 1"):
        dist.with_threads(record, 0)


def test_dask_map_blocks_recipe_gives_the_whole_array_result():
    """The README's recipe: chunks on Dask's threads, one kernel thread per task, results
    equal (bit for bit) to the kernels on the whole array; without the wrapper each worker
    thread would start a team of every core."""
    da = pytest.importorskip("dask.array")
    import dask
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 96)).astype(np.float32)
    chunked = da.from_array(x, chunks=(128, 96))                 # 4 chunks of rows
    gelu = chunked.map_blocks(dist.with_threads(mk.gelu), dtype=x.dtype)
    w, b = rng.standard_normal(96).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    norm = chunked.map_blocks(dist.with_threads(lambda blk: mk.layer_norm(blk, (96,), w, b)[0]),
                              dtype=x.dtype)
    counts = chunked.map_blocks(dist.with_threads(
        lambda blk: np.full((1, 1), mk.get_num_threads())), chunks=(1, 1), dtype=int)
    bare = chunked.map_blocks(lambda blk: np.full((1, 1), mk.get_num_threads()),
                              chunks=(1, 1), dtype=int)
    with dask.config.set(scheduler="threads", num_workers=2):
        g, n, c, c_bare = dask.compute(gelu, norm, counts, bare)
    np.testing.assert_array_equal(g, mk.gelu(x))
    np.testing.assert_array_equal(n, mk.layer_norm(x, (96,), w, b)[0])
    assert c.ravel().tolist() == [1, 1, 1, 1]
    assert set(c_bare.ravel().tolist()) == {mk.get_num_threads()}


def test_docstring_examples_run():
    """The Examples of mlkernels.distributed (those needing MPI are marked +SKIP)."""
    import doctest
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for name in dist.__all__:
        for example in finder.find(getattr(dist, name), name, globs={}):
            runner.run(example)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 10 and result.failed == 0


def test_the_gpt_demo_trains_the_same_on_two_ranks_as_on_one(mpi):
    """mpiexec -n 2 mlkernels demo gpt --distributed: each rank on half of every batch, one
    Allreduce a step; its losses are one process's on the whole batch (float32: to the
    printed 3 decimals)."""
    args = ["-m", "mlkernels", "demo", "gpt", "--steps", "3", "--batch", "4"]
    two = _run_mpi(args + ["--distributed"], 300)
    assert two.returncode == 0, two.stdout + two.stderr
    one = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, env=_env(), cwd=NEUTRAL)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "2 ranks, 2 sequences each" in two.stdout
    last = [[line for line in run.stdout.splitlines() if "step     3/3" in line][-1]
            for run in (two, one)]
    loss = [line.split("loss ")[1].split()[0] for line in last]
    assert loss[0] == loss[1], last
    assert two.stdout.count("Sample after training") == 1      # rank 0 alone prints
    bad = _run_mpi(["-m", "mlkernels", "demo", "gpt", "--steps", "1", "--batch", "3",
                    "--distributed"], 120)
    assert bad.returncode != 0 and "multiple of the 2 ranks" in bad.stdout + bad.stderr
