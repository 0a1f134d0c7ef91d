"""``python -m mlkernels bench``: the spec table's benchmark cases, side by side.

For every case, each implementation (mlkernels, NumPy, PyTorch when importable) runs on the
same inputs. Samples are taken round-robin across the implementations and a memory copy of
the case's size (so that a noisy neighbour slows all of them alike), and we report medians:
time, GB/s (unavoidable bytes / time), GFLOP/s, the speedup over NumPy and the ratio to the
copy (the memory roofline: 1.0 means "as fast as copying the data once").
"""
from __future__ import annotations

import json
import sys
import time
from statistics import median
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from . import _info
from .specs import BenchCase, by_family, families
from ._memory import peak_memory


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


def run_case(case: BenchCase, samples: int, min_seconds: float) -> Dict[str, float]:
    """Median seconds per call of every implementation (and of the copy, as "copy")."""
    fns = dict(case.impls)
    copy = case.roofline or _copy_fn(case.copy_nbytes)
    if copy is not None:
        fns["copy"] = copy
    numbers = {name: _calibrate(fn, min_seconds) for name, fn in fns.items()}
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            n = numbers[name]
            if case.settle:
                time.sleep(case.settle)     # let the other libraries' thread pools go idle
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - t0) / n)
    return {name: median(ts) for name, ts in times.items()}


def _numpy_name(impls: Sequence[str]) -> Optional[str]:
    return next((n for n in impls if n.startswith("numpy")), None)


def run(selected: Optional[Sequence[str]] = None, quick: bool = True,
        json_path: Optional[str] = None, samples: Optional[int] = None,
        out=sys.stdout, progress=sys.stderr) -> List[dict]:
    fams = list(selected) if selected else families()
    unknown = sorted(set(fams) - set(families()))
    if unknown:
        raise SystemExit(f"mlkernels bench: unknown family {unknown}; expected some of {families()}")
    samples = samples or (5 if quick else 15)
    min_seconds = 0.01 if quick else 0.05
    jobs = [(s, c) for f in fams for s in by_family(f) if s.bench for c in s.bench(quick)]
    info = _info.info()
    print(f"mlkernels {info['version']} bench ({'quick' if quick else 'full'}): ISA {info['isa']}, "
          f"{info['num_threads']} threads, BLAS {info['blas']['name']} {info['blas']['version']}; "
          f"medians of {samples} samples", file=out)
    header = (f"{'kernel':<22} {'case':<30} {'implementation':<30} {'median':>10} {'GB/s':>7} "
              f"{'GFLOP/s':>8} {'vs numpy':>9} {'vs copy':>8}")
    print(header, file=out)
    print("-" * len(header), file=out)
    rows = []
    for i, (spec, case) in enumerate(jobs, 1):
        memory = {name: peak_memory(fn) for name, fn in case.impls.items()} \
            if case.measure_memory else {}      # (one untimed call each)
        if progress is not None:
            print(f"[{i}/{len(jobs)}] {spec.name} {case.label} ...", file=progress, flush=True)
        t = run_case(case, samples, min_seconds)
        copy_t = t.pop("copy", None)
        ref = _numpy_name(list(case.impls))
        for impl, sec in t.items():
            row = {
                "family": spec.family, "kernel": spec.name, "case": case.label, "impl": impl,
                "seconds": sec,
                "GB/s": case.nbytes / sec / 1e9 if case.nbytes else None,
                "GFLOP/s": case.flops / sec / 1e9 if case.flops else None,
                "speedup_vs_numpy": t[ref] / sec if ref else None,
                "time_vs_copy": sec / (case.copy_factor * copy_t) if copy_t else None,
                "copy_seconds": copy_t, "copy_factor": case.copy_factor,
            }
            peak = memory.get(impl)
            if peak is not None:
                row["peak_traced_bytes"], row["peak_rss_bytes"] = peak["traced"], peak["rss"]
            rows.append(row)
            print(f"{spec.name:<22.22} {case.label:<30.30} {impl:<30.30} {_fmt_time(sec):>10} "
                  f"{_fmt(row['GB/s'], 1):>7} {_fmt(row['GFLOP/s'], 1):>8} "
                  f"{_fmt(row['speedup_vs_numpy'], 2, 'x'):>9} "
                  f"{_fmt(row['time_vs_copy'], 2, 'x'):>8}"
                  + (f"  peak {_fmt_mib(peak['traced'])} traced, {_fmt_mib(peak['rss'])} RSS"
                     if peak is not None else ""), file=out, flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"info": info, "quick": quick, "samples": samples, "rows": rows}, f,
                      indent=1)
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
