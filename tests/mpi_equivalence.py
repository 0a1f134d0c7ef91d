"""Data parallel equals one process: run under ``mpiexec -n 2 python -m mpi4py <this file>``.

Two ranks, each on its half of the batch, with ``allreduce_grads(average=True)``, must end
with the same parameters after 20 AdamW steps as one process on the whole batch (computed on
every rank too, with the same threads). Why they agree: each rank's loss is the mean over its
n/2 rows, so its gradient is (2/n)·Σ_half g_i; the sum over the ranks divided by 2 is
(1/n)·Σ_all g_i, the whole batch's gradient. Multiplying and dividing by 2 are exact in
binary floating point: the only difference left is the order of the sums (two half sums,
then one add, against one sum over all rows), a few ulps that AdamW carries on. So float64
agrees to 1e-12 relative.

Also: ``broadcast_parameters`` (each rank starts from its own random weights), the ranks'
parameters identical bit for bit at the end, the shards
covering the batch, a mismatched model refused on every rank (no hang), and that the
comparison can fail (the sum instead of the mean differs).

Run by ``.ci/run`` and by ``tests/test_distributed.py``; prints one line from rank 0.
"""
import sys

import numpy as np
from mpi4py import MPI

import mlkernels as mk
from mlkernels import distributed as dist, nn, optim
from mlkernels._train import mlp

STEPS, DIMS, N = 20, (12, 16, 16, 5), 24
RTOL = 1e-12


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, comm=None, average=True):
    """STEPS AdamW steps; with ``comm``, the gradients are reduced over its ranks."""
    flat = dist.flat_grads(model)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    one = np.ones((), x.dtype)
    for _ in range(STEPS):
        logits = model.forward(x)
        model.backward(mk.cross_entropy_backward(one, logits, y), need_input_grad=False)
        if comm is not None:
            dist.allreduce_grads(flat, comm, average=average)
        opt.step(model.grads())
    return np.concatenate([p.ravel() for p in model.parameters()])


def main() -> int:
    comm = MPI.COMM_WORLD
    assert comm.size == 2, f"run with mpiexec -n 2 (got {comm.size} ranks)"
    threads = dist.set_threads_per_rank(comm)
    rng = np.random.default_rng(42)
    x, y = rng.standard_normal((N, DIMS[0])), rng.integers(0, DIMS[-1], N)

    # the whole batch in one process (here, on every rank)
    whole = train(mlp(DIMS, np.float64, seed=0), x, y)

    # data parallel: rank r starts from its own weights, then takes rank 0's
    rows = dist.shard(N, comm.rank, comm.size)
    covered = comm.allgather(list(range(N))[rows])
    assert sorted(sum(covered, [])) == list(range(N)) and len(covered[0]) == N // 2
    model = mlp(DIMS, np.float64, seed=comm.rank)
    dist.broadcast_parameters(model, root=0, comm=comm)
    start = np.concatenate([p.ravel() for p in model.parameters()])
    assert np.array_equal(start, np.concatenate(
        [p.ravel() for p in mlp(DIMS, np.float64, seed=0).parameters()]))
    parallel = train(model, x[rows], y[rows], comm)

    difference = np.abs(parallel - whole) / np.abs(whole)
    worst = float(difference.max())
    assert np.abs(parallel - start).max() > 1e-3, "training did not move the parameters"
    assert worst <= RTOL, f"rank {comm.rank}: relative difference {worst:.3g} > {RTOL:g}"
    worst_all = comm.allreduce(worst, op=MPI.MAX)
    # the replicas stay identical, bit for bit: the same update on the same weights
    replicas = comm.allgather(parallel)
    assert np.array_equal(replicas[0], replicas[1]), "the ranks' parameters drifted apart"

    # the check can fail: summed (not averaged) gradients give other parameters
    model = mlp(DIMS, np.float64, seed=0)
    summed = train(model, x[rows], y[rows], comm, average=False)
    assert float((np.abs(summed - whole) / np.abs(whole)).max()) > 1e-6

    # a rank with another architecture: every rank raises, none waits in a broadcast
    try:
        dist.broadcast_parameters(mlp(DIMS if comm.rank == 0 else (12, 8, 5), np.float64),
                                  comm=comm)
    except ValueError as e:
        assert "same model" in str(e), e
    else:
        raise AssertionError("broadcast_parameters accepted different models")

    if comm.rank == 0:
        print(f"mpi equivalence: ok -- 2 ranks x {threads} thread(s), {STEPS} AdamW steps, "
              f"float64, largest relative difference to one process {worst_all:.2g} "
              f"(bound {RTOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
