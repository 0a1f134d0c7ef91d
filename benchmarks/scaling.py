"""How a data-parallel training step scales: the measurements behind docs/scaling.md.

    python benchmarks/scaling.py mpi   [--json FILE]   # drives everything below, interleaved
    python benchmarks/scaling.py dask  [--json FILE]   # Dask map_blocks against whole arrays
    python benchmarks/scaling.py table FILE.json       # the mpi run's tables, as markdown

``mpi`` alternates, round after round, three programs, so that the machine's noise falls on
all of them alike:

* ``single``: one process, the whole batch, every core (``--threads``);
* ``ranks``: ``mpiexec -n 2``, each rank on half the batch with its share of the cores, the
  gradients reduced by one blocking ``Allreduce`` of the flat buffer -- and, in the same
  run, interleaved step by step, the same step with the reduction overlapped with the
  backward (a non-blocking ``Iallreduce`` of each layer's gradients started as soon as that
  layer's backward returns, all waited for before the optimizer);
* ``allreduce``: ``mpiexec -n 2``, ``Allreduce`` alone over a range of sizes (latency and
  bandwidth of the ring model).

Each program prints one JSON line; the driver keeps medians over rounds.

The models: ``CASES`` (an entry is a name, a builder of model and batch, the whole batch, the
steps per sample, and the forward-loss-backward of the model). The GPT is measured with the
blocking reduction only: its tied embedding's gradient is complete only at the end of the
backward, so the per-module overlap below does not apply to it as written.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

HERE = os.path.abspath(__file__)

# --------------------------------------------------------------------------- the models


def _mlp_case(dims, n):
    def build(rows: slice, dtype=np.float32):
        from mlkernels._train import batch, mlp
        x, y = batch(dims, n, dtype)
        return mlp(dims, dtype), x[rows], y[rows]
    return build


def cross_entropy_backward(model, x, y, dlogits=None):
    """Forward, loss (mean over this rank's rows), backward into model.grads()."""
    import mlkernels as mk
    logits = model.forward(x)
    loss = mk.cross_entropy(logits, y)
    model.backward(mk.cross_entropy_backward(np.ones((), x.dtype), logits, y, out=dlogits),
                   need_input_grad=False)
    return loss


def _gpt_case(n):
    def build(rows: slice, dtype=np.float32):
        from mlkernels._train import gpt, gpt_batch
        idx, targets = gpt_batch(n)
        return gpt(dtype), idx[rows], targets[rows]
    return build


def gpt_loss_backward(model, idx, targets):
    """The GPT's forward with its loss (mean over this rank's tokens), then its backward."""
    loss = model.forward(idx, targets)
    model.backward()
    return loss


#: name -> (builder(rows, dtype) -> (model, x, y), whole batch size, steps per sample,
#: loss_backward(model, x, y), whether the per-module overlapped reduction applies)
CASES: Dict[str, Tuple[Callable, int, int, Callable, bool]] = {
    "mlp 784-256-256-10 b64": (_mlp_case((784, 256, 256, 10), 64), 64, 100,
                               cross_entropy_backward, True),
    "mlp 784-1024-1024-10 b256": (_mlp_case((784, 1024, 1024, 10), 256), 256, 20,
                                  cross_entropy_backward, True),
    "gpt 4x128 context 128 b16": (_gpt_case(16), 16, 5, gpt_loss_backward, False),
}
ALLREDUCE_BYTES = [8, 1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 23, 1 << 25]


# --------------------------------------------------------------------------- one process

def run_single(case: str, threads: int, samples: int) -> dict:
    import mlkernels as mk
    from mlkernels import optim
    build, n, steps, loss_backward, _ = CASES[case]
    mk.set_num_threads(threads)
    model, x, y = build(slice(0, n))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    grads = model.grads()
    times = {"step": [], "compute": [], "optimizer": []}
    for s in range(samples + 1):
        t_compute = t_opt = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            a = time.perf_counter()
            loss_backward(model, x, y)
            b = time.perf_counter()
            opt.step(grads)
            c = time.perf_counter()
            t_compute += b - a
            t_opt += c - b
        total = time.perf_counter() - t0
        if s:                                   # the first sample warms up
            times["step"].append(total / steps)
            times["compute"].append(t_compute / steps)
            times["optimizer"].append(t_opt / steps)
    return {"program": "single", "case": case, "threads": threads, "batch": n,
            **{k: statistics.median(v) for k, v in times.items()}}


# --------------------------------------------------------------------------- 2 ranks

def _overlap(model, flat, comm):
    """Wrap the backward of every module that owns parameters so that, as soon as it returns,
    a non-blocking Iallreduce of that module's gradients (a contiguous piece of ``flat``)
    starts. Returns the list the requests go to."""
    from mpi4py import MPI
    requests: List = []
    offset = 0

    def visit(module):
        nonlocal offset
        own = [getattr(module, "grad_" + n) for n in module.param_names
               if getattr(module, n) is not None]
        if own:
            size = sum(g.size for g in own)
            piece = flat[offset:offset + size]
            offset += size
            original = module.backward

            def backward(*args, **kwargs):
                out = original(*args, **kwargs)
                requests.append(comm.Iallreduce(MPI.IN_PLACE, piece))
                return out
            module.backward = backward
        for child in module.children():
            visit(child)
    visit(model)
    assert offset == flat.size
    return requests


def run_ranks(case: str, samples: int) -> dict:
    from mpi4py import MPI
    from mlkernels import distributed as dist, optim
    comm = MPI.COMM_WORLD
    threads = dist.set_threads_per_rank(comm)
    build, n, steps, loss_backward, overlap = CASES[case]
    rows = dist.shard(n, comm.rank, comm.size)
    models = {}
    for variant in ("blocking", "overlapped") if overlap else ("blocking",):
        model, x, y = build(rows)
        dist.broadcast_parameters(model, comm=comm)
        flat = dist.flat_grads(model)
        opt = optim.AdamW(model.parameters(), lr=1e-3)
        requests = _overlap(model, flat, comm) if variant == "overlapped" else None
        models[variant] = (model, x, y, flat, opt, model.grads(), requests)
    times = {v: {"step": [], "compute": [], "allreduce": [], "optimizer": []} for v in models}
    for s in range(samples + 1):
        for variant, (model, x, y, flat, opt, grads, requests) in models.items():
            t = {"compute": 0.0, "allreduce": 0.0, "optimizer": 0.0}
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(steps):
                a = time.perf_counter()
                loss_backward(model, x, y)
                b = time.perf_counter()
                if requests is None:
                    dist.allreduce_grads(flat, comm)
                else:
                    MPI.Request.Waitall(requests)
                    requests.clear()
                    flat /= comm.size
                c = time.perf_counter()
                opt.step(grads)
                d = time.perf_counter()
                t["compute"] += b - a
                t["allreduce"] += c - b
                t["optimizer"] += d - c
            total = time.perf_counter() - t0
            if s:
                times[variant]["step"].append(total / steps)
                for k, v in t.items():
                    times[variant][k].append(v / steps)
    # the step time is the same on every rank (they meet in the reduction); its parts are
    # not: the rank that computes faster waits for the other inside the reduction
    mine = {variant: {k: statistics.median(v) for k, v in ts.items()}
            for variant, ts in times.items()}
    every = comm.gather(mine)
    out = {"program": "ranks", "case": case, "ranks": comm.size, "threads_per_rank": threads,
           "grad_bytes": int(models["blocking"][3].nbytes),
           "async_progress": os.environ.get("MPICH_ASYNC_PROGRESS", "0")}
    if comm.rank == 0:
        for variant in times:
            parts = {k: [r[variant][k] for r in every] for k in every[0][variant]}
            out[variant] = {"step": max(parts["step"]),
                            "compute": max(parts["compute"]),      # the slower rank's
                            "compute_fastest": min(parts["compute"]),
                            "allreduce": min(parts["allreduce"]),  # the rank that waited least
                            "optimizer": max(parts["optimizer"])}
    return out


def run_allreduce(samples: int) -> dict:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    out = {"program": "allreduce", "ranks": comm.size, "seconds": {}}
    for nbytes in ALLREDUCE_BYTES:
        buf = np.ones(max(1, nbytes // 4), np.float32)
        reps = max(3, min(1000, (1 << 24) // max(nbytes, 1 << 12)))
        ts = []
        for s in range(samples + 1):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                comm.Allreduce(MPI.IN_PLACE, buf)
            ts.append((time.perf_counter() - t0) / reps)
        out["seconds"][str(buf.nbytes)] = statistics.median(ts[1:])
    return out


# --------------------------------------------------------------------------- the drivers

def _python() -> List[str]:
    return [sys.executable, HERE]


def _mpiexec() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else "mpiexec"


def _child(args: List[str], mpi: bool, env: dict = None) -> dict:
    cmd = ([_mpiexec(), "-n", "2"] if mpi else []) + _python() + args
    run = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         timeout=600, env=dict(os.environ, **(env or {})))
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    import mlkernels as mk
    from mpi4py import MPI
    return {"date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "numpy": np.__version__, "mlkernels": mk.__version__, "isa": mk.active_isa(),
            "mpi": " ".join(MPI.Get_library_version().splitlines()[0].split())}


def drive_mpi(rounds: int, samples: int, json_path: str = None) -> dict:
    cores = len(os.sched_getaffinity(0))
    results: Dict[str, list] = {}
    for r in range(rounds):
        for case in CASES:
            for label, args, mpi, env in (
                    (f"single {cores}t|{case}", ["_single", case, str(cores), str(samples)],
                     False, None),
                    (f"single 1t|{case}", ["_single", case, "1", str(samples)], False, None),
                    (f"ranks|{case}", ["_ranks", case, str(samples)], True, None),
                    (f"ranks async|{case}", ["_ranks", case, str(samples)], True,
                     {"MPICH_ASYNC_PROGRESS": "1"})):
                results.setdefault(label, []).append(_child(args, mpi, env))
        results.setdefault("allreduce", []).append(_child(["_allreduce", str(samples)], True))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    summary = {"machine": _machine(), "rounds": rounds, "samples_per_round": samples,
               "cases": {}, "allreduce_seconds": {}}
    med = statistics.median
    for nbytes in results["allreduce"][0]["seconds"]:
        summary["allreduce_seconds"][nbytes] = med(r["seconds"][nbytes]
                                                   for r in results["allreduce"])
    for case in CASES:
        single = results[f"single {cores}t|{case}"]
        single1 = results[f"single 1t|{case}"]
        ranks = results[f"ranks|{case}"]
        entry = {"batch": CASES[case][1], "grad_bytes": ranks[0]["grad_bytes"],
                 f"one process, {cores} threads": {k: med(r[k] for r in single)
                                                    for k in ("step", "compute", "optimizer")},
                 "one process, 1 thread": {k: med(r[k] for r in single1)
                                           for k in ("step", "compute", "optimizer")}}
        for variant in ("blocking", "overlapped"):
            if variant not in ranks[0]:
                continue
            entry[f"2 ranks, {variant}"] = {k: med(r[variant][k] for r in ranks)
                                            for k in ranks[0][variant]}
        asyn = results[f"ranks async|{case}"]
        for variant in ("blocking", "overlapped"):
            if variant not in asyn[0]:
                continue
            entry[f"2 ranks, {variant}, MPICH_ASYNC_PROGRESS=1"] = {
                k: med(r[variant][k] for r in asyn) for k in asyn[0][variant]}
        summary["cases"][case] = entry
    if json_path:
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def drive_dask(rounds: int, json_path: str = None) -> dict:
    """4-chunk GELU and LayerNorm on Dask's threaded scheduler against the kernels on the
    whole array, interleaved, medians."""
    import dask
    import dask.array as da
    import mlkernels as mk
    from mlkernels.distributed import with_threads
    cores = len(os.sched_getaffinity(0))
    rows, cols = 4096, 4096                          # 16M float32, 64 MiB
    x = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
    w, b = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    out = np.empty_like(x)
    chunked = da.from_array(x, chunks=(rows // 4, cols))
    kernels = {
        "gelu": (lambda a, o=None: mk.gelu(a, out=o)),
        "layer_norm": (lambda a, o=None: mk.layer_norm(a, (cols,), w, b)[0] if o is None else
                       mk.layer_norm(a, (cols,), w, b, out=(o, np.empty(a.shape[0], a.dtype),
                                                            np.empty(a.shape[0], a.dtype)))[0]),
    }
    variants = {}
    for name, fn in kernels.items():
        variants[f"{name}|whole array, {cores} threads"] = lambda fn=fn: fn(x)
        variants[f"{name}|whole array, {cores} threads, out="] = lambda fn=fn: fn(x, out)
        variants[f"{name}|whole array, 1 thread"] = lambda fn=fn: with_threads(fn)(x)
        one = chunked.map_blocks(with_threads(fn), dtype=x.dtype)
        bare = chunked.map_blocks(fn, dtype=x.dtype)
        variants[f"{name}|dask 4 chunks, {cores} workers x 1 thread (with_threads)"] = \
            lambda one=one: one.compute(scheduler="threads", num_workers=cores)
        variants[f"{name}|dask 4 chunks, {cores} workers x 1 thread, store into out"] = \
            lambda one=one: da.store(one, out, scheduler="threads", num_workers=cores,
                                     lock=False)
        variants[f"{name}|dask 4 chunks, {cores} workers x {cores} threads (no wrapper)"] = \
            lambda bare=bare: bare.compute(scheduler="threads", num_workers=cores)

        def into_out(block, block_info=None, fn=fn):
            """Each task writes its rows of ``out`` itself: no chunk allocated or copied."""
            (r0, r1), _ = block_info[0]["array-location"]
            fn(block, out[r0:r1])
            return np.zeros((1, 1), np.int8)
        tasks = chunked.map_blocks(with_threads(into_out), chunks=(1, 1), dtype=np.int8)
        variants[f"{name}|dask 4 chunks, {cores} workers x 1 thread, each task writes its "
                 f"rows of out"] = \
            lambda tasks=tasks: tasks.compute(scheduler="threads", num_workers=cores)
    times: Dict[str, list] = {k: [] for k in variants}
    for r in range(rounds + 1):
        for k, call in variants.items():
            t0 = time.perf_counter()
            call()
            if r:
                times[k].append(time.perf_counter() - t0)
    summary = {"machine": _machine(), "rounds": rounds, "shape": [rows, cols],
               "dtype": "float32", "chunks": 4, "dask": dask.__version__,
               "seconds": {k: statistics.median(v) for k, v in times.items()}}
    if json_path:
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def fit_allreduce(seconds: Dict[str, float], ranks: int = 2) -> Tuple[float, float]:
    """Latency α and bandwidth β of the ring model t(n) = 2(p−1)·α + 2(p−1)/p · n/β, fitted
    by least squares (relative) to the measured Allreduce times."""
    n = np.array([float(k) for k in seconds])
    t = np.array(list(seconds.values()))
    a = np.stack([np.full_like(n, 2 * (ranks - 1)), 2 * (ranks - 1) / ranks * n], 1)
    (alpha, inv_beta), *_ = np.linalg.lstsq(a / t[:, None], np.ones_like(t), rcond=None)
    return float(alpha), float(1 / inv_beta)


def _ms(v: float) -> str:
    return f"{v * 1e3:.2f}"


def tables(json_path: str) -> str:
    """The markdown tables of docs/scaling.md from a ``mpi --json`` file."""
    with open(json_path) as f:
        d = json.load(f)
    m = d["machine"]
    lines = [f"Measured {m['date']}: {m['cores']} cores, {m['mpi']}, mlkernels {m['mlkernels']} "
             f"({m['isa']}), medians of {d['rounds']} interleaved rounds x "
             f"{d['samples_per_round']} samples.", ""]
    cores = m["cores"]
    lines += ["| model (grad bytes) | how | step ms | fwd+bwd ms | Allreduce ms | AdamW ms |",
              "|---|---|---|---|---|---|"]
    for case, e in d["cases"].items():
        name = f"{case} ({e['grad_bytes'] / 2 ** 20:.2f} MiB)"
        for how, label in ((f"one process, {cores} threads", f"1 process x {cores} threads, "
                            f"batch {e['batch']}"),
                           ("one process, 1 thread", f"1 process x 1 thread, batch {e['batch']}"),
                           ("2 ranks, blocking", f"2 ranks x 1 thread, {e['batch'] // 2} rows "
                            f"each, one Allreduce"),
                           ("2 ranks, overlapped", "2 ranks, Iallreduce per layer in the "
                            "backward"),
                           ("2 ranks, overlapped, MPICH_ASYNC_PROGRESS=1",
                            "same, MPICH's progress thread on")):
            if how not in e:
                continue
            r = e[how]
            lines.append(f"| {name} | {label} | {_ms(r['step'])} | {_ms(r['compute'])} | "
                         f"{_ms(r['allreduce']) if 'allreduce' in r else ''} | "
                         f"{_ms(r['optimizer'])} |")
            name = ""
    alpha, beta = fit_allreduce(d["allreduce_seconds"])
    lines += ["", "| Allreduce of | " + " | ".join(
        f"{int(k) / 2 ** 20:g} MiB" if int(k) >= 2 ** 20 else f"{int(k) / 1024:g} KiB"
        if int(k) >= 1024 else f"{k} B" for k in d["allreduce_seconds"]) + " |",
        "|---" * (len(d["allreduce_seconds"]) + 1) + "|",
        "| 2 ranks, µs | " + " | ".join(f"{v * 1e6:.1f}" for v in
                                      d["allreduce_seconds"].values()) + " |", "",
        f"Ring model fitted to these: α = {alpha * 1e6:.1f} µs, β = {beta / 1e9:.2f} GB/s."]
    lines += ["", predictions(d, alpha, beta)]
    return "\n".join(lines)


#: (label, α seconds, β bytes/s) of the links the model is evaluated for; the last two are
#: typical figures for such networks, assumed, not measured here
NETWORKS = [("10 Gb/s Ethernet (assumed α 25 µs, β 1.2 GB/s)", 25e-6, 1.2e9),
            ("100 Gb/s InfiniBand (assumed α 2 µs, β 12 GB/s)", 2e-6, 12e9)]
RANKS = [1, 2, 4, 8, 16]


def step_model(compute: float, optimizer: float, grad_bytes: float, p: int, alpha: float,
               beta: float) -> float:
    """T(p) = compute/p + optimizer + 2(p−1)·α + 2(p−1)/p · bytes/β: forward and backward
    split over p ranks (one per node), the optimizer step repeated on every rank, and a ring
    Allreduce of the gradients."""
    ring = 2 * (p - 1) * alpha + 2 * (p - 1) / p * grad_bytes / beta if p > 1 else 0.0
    return compute / p + optimizer + ring


def predictions(d: dict, alpha: float, beta: float) -> str:
    """Step time against ranks (one rank per node of this machine's kind, all its cores), from
    the measured one-process step and the ring model."""
    cores = d["machine"]["cores"]
    lines = []
    for case, e in d["cases"].items():          # the model against the measured 2 ranks
        two = e["2 ranks, blocking"]
        model = step_model(two["compute"] * 2, two["optimizer"], e["grad_bytes"], 2, alpha,
                           beta)
        lines.append(f"* {case}, 2 ranks on this node: measured {_ms(two['step'])} ms a step; "
                     f"the model from its parts ({_ms(two['compute'])} ms forward and backward "
                     f"on the slower rank, {_ms(two['optimizer'])} ms AdamW, the fitted ring "
                     f"for {e['grad_bytes'] / 2 ** 20:.2f} MiB) gives {_ms(model)} ms.")
    lines += ["", f"Predicted step time (and speedup) with p nodes like this one, one rank of "
              f"{cores} threads each, the whole batch fixed (measured here: the 1-process step's "
              f"forward+backward and AdamW):", ""]
    lines += ["| model | link | " + " | ".join(f"p = {p}" for p in RANKS) + " |",
             "|---|---" + "|---" * len(RANKS) + "|"]
    for case, e in d["cases"].items():
        one = e[f"one process, {cores} threads"]
        for label, a, b in NETWORKS:
            t1 = step_model(one["compute"], one["optimizer"], e["grad_bytes"], 1, a, b)
            cells = []
            for p in RANKS:
                t = step_model(one["compute"], one["optimizer"], e["grad_bytes"], p, a, b)
                cells.append(f"{t * 1e3:.2f} ms ({t1 / t:.2f}x)")
            lines.append(f"| {case} | {label} | " + " | ".join(cells) + " |")
            case = ""
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("_"):                     # a child program
        what, rest = argv[0], argv[1:]
        if what == "_single":
            result = run_single(rest[0], int(rest[1]), int(rest[2]))
        elif what == "_ranks":
            result = run_ranks(rest[0], int(rest[1]))
        else:
            result = run_allreduce(int(rest[0]))
        if what == "_single" or __import__("mpi4py.MPI").MPI.COMM_WORLD.rank == 0:
            print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["mpi", "dask", "table"])
    parser.add_argument("file", nargs="?", help="table: the mpi --json file to render")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.what == "table":
        print(tables(args.file))
        return 0
    if args.what == "mpi":
        summary = drive_mpi(args.rounds, args.samples, args.json)
    else:
        summary = drive_dask(args.rounds, args.json)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
