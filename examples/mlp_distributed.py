"""Data-parallel training of an MLP over MPI, on mlkernels' layers.

    pip install "mlkernels[dist]"                     # mpi4py, and MPICH with its mpiexec
    mpiexec -n 2 python examples/mlp_distributed.py   # 2 ranks, each on half of every batch
    python examples/mlp_distributed.py                # 1 rank: plain training, same curve

The recipe (mlkernels.distributed): every rank builds the same model and takes rank 0's
weights; its gradients are moved into one flat buffer; each step a rank runs forward and
backward on its share of the batch (the loss a mean over its rows), one in-place
``Allreduce`` averages the buffer over the ranks -- the gradient of the whole batch -- and
every rank takes the same AdamW step, so the replicas stay identical without ever sending
a weight again. The node's cores are shared among the ranks on it.

To train another model, add an entry to ``MODELS``: a function returning the model, the
training data and a ``loss_backward(model, x, y)`` (forward, loss, backward), and an
``evaluate``. Only the model-specific lines change; ``train`` works for any nn.Module.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Iterator, Tuple

import numpy as np

import mlkernels as mk
from mlkernels import distributed as dist, nn, optim


# ------------------------------------------------------------------------ the data and model

def digits(seed: int = 0):
    """scikit-learn's 8x8 digits (the demo extra), or blobs like them without it."""
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    except ImportError:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 10, 1797)
        x = (rng.normal(0, 1, (10, 64))[y] + rng.normal(0, 1, (1797, 64))).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))   # the same on every rank
    x, y = x[order], y[order]
    split = int(0.75 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def cross_entropy_loss_backward(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Forward, loss (the mean over this rank's rows), backward into ``model.grads()``."""
    logits = model.forward(x)
    loss = mk.cross_entropy(logits, y)
    model.backward(mk.cross_entropy_backward(np.ones((), x.dtype), logits, y),
                   need_input_grad=False)
    return float(loss)


def mlp_digits(args):
    train_set, test_set = digits(args.seed)
    rng = np.random.default_rng(args.seed)
    model = nn.Sequential(nn.Linear(64, args.hidden, rng=rng), nn.LayerNorm(args.hidden),
                          nn.GELU(), nn.Linear(args.hidden, args.hidden, rng=rng),
                          nn.LayerNorm(args.hidden), nn.GELU(), nn.Linear(args.hidden, 10, rng=rng))

    def evaluate(model):
        x, y = test_set
        return f"test accuracy {np.mean(np.argmax(model.eval().forward(x), 1) == y):.3f}"
    return model, train_set, cross_entropy_loss_backward, evaluate


#: name -> builder(args) -> (model, (x, y) training data, loss_backward, evaluate)
MODELS = {"mlp": mlp_digits}


# ------------------------------------------------------------------------ data parallel

def batches(x: np.ndarray, y: np.ndarray, batch: int, comm, seed: int
            ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """This rank's share of each batch, forever: every epoch the ranks draw the same
    permutation (same seed), cut it into whole batches, and each takes its share."""
    if batch % comm.size:
        raise SystemExit(f"--batch {batch} must be a multiple of the {comm.size} ranks (equal "
                         f"shares make the average of the ranks' mean losses the batch's mean)")
    for epoch in range(10 ** 9):
        order = np.random.default_rng((seed, epoch)).permutation(len(x))
        for start in range(0, len(x) - batch + 1, batch):
            rows = order[start:start + batch][dist.shard(batch, comm.rank, comm.size)]
            yield x[rows], y[rows]


def train(model: nn.Module, loss_backward: Callable, data: Iterator, steps: int, lr: float,
          comm, log_every: int = 50):
    """Data-parallel AdamW on any nn.Module. Returns the loss curve (mean over the ranks,
    every ``log_every`` steps), seconds per step, and the share of it spent in Allreduce."""
    dist.broadcast_parameters(model, root=0, comm=comm)    # rank 0's weights everywhere
    flat = dist.flat_grads(model)                          # gradients in one buffer
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    grads = model.grads()                                  # (after flat_grads: the views)
    curve, reducing = [], 0.0
    comm.Barrier()
    start = time.perf_counter()
    for step, (x, y) in zip(range(steps), data):
        loss = loss_backward(model.train(), x, y)
        t = time.perf_counter()
        dist.allreduce_grads(flat, comm)                   # one Allreduce, in place
        reducing += time.perf_counter() - t
        opt.step(grads)
        if step % log_every == 0 or step == steps - 1:
            curve.append((step, comm.allreduce(loss) / comm.size))
    seconds = (time.perf_counter() - start) / steps
    return curve, seconds, reducing / steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64, help="the whole batch, all ranks")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    comm = dist.world()
    threads = dist.set_threads_per_rank(comm)
    model, (x, y), loss_backward, evaluate = MODELS[args.model](args)
    curve, seconds, reduce_share = train(model, loss_backward,
                                         batches(x, y, args.batch, comm, args.seed),
                                         args.steps, args.lr, comm)
    if comm.rank == 0:
        print(f"{args.model}: {comm.size} rank(s) x {threads} thread(s), batch {args.batch} "
              f"({args.batch // comm.size} rows per rank), {len(x)} training rows")
        for step, loss in curve:
            print(f"  step {step:5d}  loss {loss:.4f}")
        print(f"{seconds * 1e3:.3f} ms per step, {100 * reduce_share:.0f}% of it in Allreduce; "
              f"{evaluate(model)}")


if __name__ == "__main__":
    main()
