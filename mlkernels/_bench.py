"""``python -m mlkernels bench``: the spec table's benchmark cases, side by side.

For every case, each implementation (mlkernels, NumPy, PyTorch when importable) runs on the
same inputs. Samples are taken round-robin across the implementations and a memory copy of
the case's size (so that a noisy neighbour slows all of them alike), and we report medians:
time, GB/s (unavoidable bytes / time), GFLOP/s, the speedup over NumPy and the ratio to the
copy (the memory roofline: 1.0 means "as fast as copying the data once").
"""
from __future__ import annotations

import datetime
import json
import sys
import time
from statistics import median
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import _info
from .specs import BenchCase, by_family, families
from ._memory import peak_memory


#: version of the JSON layout (docs/benchmarks.md)
SCHEMA_VERSION = 1


class _Row(NamedTuple):
    """What a benchmark row names: its family and kernel (or model)."""
    family: str
    name: str


def _calibrate(fn: Callable[[], object], min_seconds: float) -> int:
    """How many calls make one sample last at least ``min_seconds``."""
    fn()  # warm up (first-touch page faults, lazy imports)
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_seconds / max(elapsed, 1e-9) * 1.2))


def _copy_fn(nbytes: int) -> Optional[Callable[[], object]]:
    if nbytes <= 0:
        return None
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def run_case(case: BenchCase, samples: int, min_seconds: float) -> Dict[str, List[float]]:
    """Seconds per call of every implementation (and of the copy, as "copy"), one value per
    sample; samples taken round-robin over the implementations, back to back."""
    fns = dict(case.impls)
    copy = case.roofline or _copy_fn(case.copy_nbytes)
    if copy is not None:
        fns["copy"] = copy
    numbers = {name: _calibrate(fn, min_seconds) for name, fn in fns.items()}
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            n = numbers[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - t0) / n)
    return times


def _quartiles(ts: List[float]) -> Tuple[float, float]:
    q = np.percentile(ts, [25, 75])
    return float(q[0]), float(q[1])


def _numpy_name(impls: Sequence[str]) -> Optional[str]:
    return next((n for n in impls if n.startswith("numpy")), None)


def _train_cases(quick: bool) -> List[Tuple[str, BenchCase]]:
    """Whole training steps (mlkernels/_train.py) of the MLPs and of the demo's GPT:
    mlkernels, the NumPy references and PyTorch, each from the same weights, side by side."""
    from . import _train
    cases = []
    models = _train.MODELS[:3] if quick else _train.MODELS
    for label, dims, n in models:
        macs = n * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        # forward, then backward's two products per layer but the first layer's grad_x
        flops = 2.0 * (3 * macs - n * dims[0] * dims[1])
        reference = not quick or dims[1] <= 256
        impls = _train.steps(dims, n, np.float32, reference=reference)
        cases.append((f"MLP {label}", BenchCase(f"float32 batch {n}", impls, shape=(n, dims[0]),
                                                 flops=flops)))
    # the demo's GPT: B·T tokens per step; flops = 6 per token and weight (forward 2, backward
    # 4) for the blocks' 12·C² weights and the tied head, plus the causal attention's products
    m, B = _train.GPT_MODEL, _train.GPT_BATCH
    T, C, L = m["block_size"], m["n_embd"], m["n_layer"]
    flops = 6.0 * B * T * (12 * L * C * C + m["vocab_size"] * C) + 6.0 * L * B * T * T * C
    cases.append((_train.GPT_LABEL, BenchCase(f"float32 batch {B}",
                                              _train.gpt_steps(np.float32, reference=not quick),
                                              shape=(B, T), flops=flops, tokens=B * T)))
    return cases


def _call_cases(quick: bool) -> List[Tuple[str, BenchCase]]:
    """The cost of one call of every public function on a small input (mlkernels/_calls.py)."""
    from . import _calls
    return [(name, BenchCase(f"({_calls.ROWS}, {_calls.COLS}) float32, per call", impls,
                             shape=(_calls.ROWS, _calls.COLS)))
            for name, impls in _calls.cases()]


def _mix_cases(quick: bool) -> List[Tuple[str, BenchCase]]:
    """A user's own NumPy interleaved with our kernels: NumPy's matmul (its own OpenBLAS and
    thread pool), then mk.gelu on the product, in a loop. The loop should cost the sum of its
    parts: "matmul, then gelu" against "matmul" and "gelu" timed alone, side by side. And
    several Python threads calling kernels at once against one thread calling them in turn."""
    import threading

    import mlkernels as mk
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512), dtype=np.float32)
    b = rng.standard_normal((512, 512), dtype=np.float32)
    c, y = np.empty_like(a), np.empty_like(a)
    impls = {"matmul, then gelu": lambda: (np.matmul(a, b, out=c), mk.gelu(c, out=y)),
             "matmul alone": lambda: np.matmul(a, b, out=c),
             "gelu alone": lambda: mk.gelu(c, out=y)}
    cases = [("numpy matmul + mk.gelu", BenchCase("float32 512x512", impls, shape=(512, 512)))]
    xs = [rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(4)]
    outs = [np.empty_like(x) for x in xs]

    def one_thread():
        for x, o in zip(xs, outs):
            mk.gelu(x, out=o)

    def four_threads():
        ts = [threading.Thread(target=mk.gelu, args=(x,), kwargs={"out": o})
              for x, o in zip(xs, outs)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    cases.append(("4 x mk.gelu 1024x1024", BenchCase(
        "float32, from 4 Python threads vs 1", {"4 Python threads at once": four_threads,
                                                 "1 Python thread, in turn": one_thread},
        shape=(4, 1024, 1024))))
    return cases


def _storage16_cases(quick: bool) -> List[Tuple[str, BenchCase]]:
    """Every 16-bit storage case of the spec rows (bfloat16 and float16 against float32 and
    PyTorch), without the rows' other cases: the activations' rows of
    storage16.ACTIVATION_ROWS, then each builder of storage16 once."""
    from .specs import activations as act_specs, storage16
    cases = []
    for row, name, params, _ in act_specs.ACTIVATIONS:
        if row in storage16.ACTIVATION_ROWS:
            for backward in (False, True):
                cases += [(name + ("_backward" if backward else ""), c) for c in
                          storage16.activation_cases(row, name, params, backward, quick)]
    built = {}
    for kernel, builder in storage16._BUILDERS.items():
        if builder not in built:
            built[builder] = builder(quick)
        cases += [(kernel, c) for c in built[builder].get(kernel, [])]
    return cases


#: benchmark families that are not rows of the kernel spec table
EXTRA_FAMILIES = {"train": _train_cases, "calls": _call_cases, "mix": _mix_cases,
                  "storage16": _storage16_cases}


def all_families() -> List[str]:
    return families() + sorted(EXTRA_FAMILIES)


def run(selected: Optional[Sequence[str]] = None, quick: bool = True,
        json_path: Optional[str] = None, samples: Optional[int] = None,
        out=sys.stdout, progress=sys.stderr) -> List[dict]:
    fams = list(selected) if selected else all_families()
    unknown = sorted(set(fams) - set(all_families()))
    if unknown:
        raise SystemExit(f"mlkernels bench: unknown family {unknown}; expected some of "
                         f"{all_families()}")
    samples = samples or (5 if quick else 15)
    min_seconds = 0.01 if quick else 0.05
    jobs = []
    for f in fams:
        if f in EXTRA_FAMILIES:
            jobs += [(_Row(f, name), c) for name, c in EXTRA_FAMILIES[f](quick)]
        else:
            jobs += [(s, c) for s in by_family(f) if s.bench for c in s.bench(quick)]
    info = _info.info()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(f"mlkernels {info['version']} bench ({'quick' if quick else 'full'}), {started}: "
          f"{info['cpu']}, ISA {info['isa']}, {info['num_threads']} threads, BLAS "
          f"{info['blas']['name']} {info['blas']['version']}; medians of {samples} samples",
          file=out)
    kw = max([len("kernel")] + [len(spec.name) for spec, _ in jobs])
    cw = max([len("case")] + [len(case.label) for _, case in jobs])
    iw = max([len("implementation")] + [len(i) for _, case in jobs for i in case.impls])
    header = (f"{'kernel':<{kw}} {'case':<{cw}} {'implementation':<{iw}} {'median':>10} "
              f"{'GB/s':>7} {'GFLOP/s':>8} {'vs numpy':>9} {'vs torch':>9} {'vs copy':>8}")
    print(header, file=out)
    print("-" * len(header), file=out)
    rows = []
    for i, (spec, case) in enumerate(jobs, 1):
        memory = {name: peak_memory(fn) for name, fn in case.impls.items()} \
            if case.measure_memory else {}      # (one untimed call each)
        if progress is not None:
            print(f"[{i}/{len(jobs)}] {spec.name} {case.label} ...", file=progress, flush=True)
        samples_of = run_case(case, samples, min_seconds)
        t = {name: median(ts) for name, ts in samples_of.items()}
        copy_t = t.pop("copy", None)
        ref = _numpy_name(list(case.impls))
        # PyTorch's fair peer: with out= when the case has it (as ours is timed)
        peer = "torch (out=)" if "torch (out=)" in case.impls else \
            next((n for n in case.impls if n.startswith("torch")), None)
        for impl, sec in t.items():
            q1, q3 = _quartiles(samples_of[impl])
            row = {
                "family": spec.family, "kernel": spec.name, "case": case.label,
                "dtype": case.dtype, "shape": list(case.shape) if case.shape else None,
                "size": int(np.prod(case.shape)) if case.shape else None,
                "impl": impl, "seconds": sec, "samples": samples_of[impl],
                "q1": q1, "q3": q3, "calls_per_sample": None,
                "GB/s": case.nbytes / sec / 1e9 if case.nbytes else None,
                "GFLOP/s": case.flops / sec / 1e9 if case.flops else None,
                "speedup_vs_numpy": t[ref] / sec if ref else None,
                "speedup_vs_torch": t[peer] / sec if peer else None,
                "time_vs_copy": sec / (case.copy_factor * copy_t) if copy_t else None,
                "copy_seconds": copy_t, "copy_factor": case.copy_factor,
                "nbytes": case.nbytes or None, "flops": case.flops or None,
            }
            if case.tokens:
                row["tokens_per_s"] = case.tokens / sec
            del row["calls_per_sample"]
            peak = memory.get(impl)
            if peak is not None:
                row["peak_traced_bytes"], row["peak_rss_bytes"] = peak["traced"], peak["rss"]
            rows.append(row)
            print(f"{spec.name:<{kw}} {case.label:<{cw}} {impl:<{iw}} {_fmt_time(sec):>10} "
                  f"{_fmt(row['GB/s'], 1):>7} {_fmt(row['GFLOP/s'], 1):>8} "
                  f"{_fmt(row['speedup_vs_numpy'], 2, 'x'):>9} "
                  f"{_fmt(row['speedup_vs_torch'], 2, 'x'):>9} "
                  f"{_fmt(row['time_vs_copy'], 2, 'x'):>8}"
                  + (f"  peak {_fmt_mib(peak['traced'])} traced, {_fmt_mib(peak['rss'])} RSS"
                     if peak is not None else "")
                  + (f"  {row['tokens_per_s']:,.0f} tokens/s" if case.tokens else ""),
                  file=out, flush=True)
        for impl, figures in (case.memory() if case.memory else {}).items():
            rows.append({"family": spec.family, "kernel": spec.name, "case": case.label,
                         "impl": impl, "memory": dict(figures)})
            print(f"{spec.name:<{kw}} {case.label:<{cw}} {impl:<{iw}} peak memory: "
                  f"{figures['text']}", file=out, flush=True)
    if json_path:
        torch = None
        try:
            import torch
        except ImportError:
            pass
        with open(json_path, "w") as f:
            json.dump({"schema": SCHEMA_VERSION, "started": started,
                       "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
                           timespec="seconds"),
                       "command": "mlkernels bench " + " ".join(
                           (["--full"] if not quick else []) +
                           [f"--family {f}" for f in (selected or [])]),
                       "quick": quick, "samples": samples, "min_seconds": min_seconds,
                       "info": info, "torch": None if torch is None else torch.__version__,
                       "rows": rows}, f, indent=1)
    return rows


def _fmt(v: Optional[float], digits: int, suffix: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def _fmt_mib(nbytes: Optional[float]) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


def _fmt_time(sec: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if sec >= scale:
            return f"{sec / scale:.3g} {unit}"
    return f"{sec / 1e-9:.3g} ns"
