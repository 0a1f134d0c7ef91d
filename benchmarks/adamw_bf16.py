"""AdamW at 16M params: the measurements behind docs/kernels/bf16.md's "AdamW: the
conversions inside the loop".

    python benchmarks/adamw_bf16.py [rounds]          (MLKERNELS_ISA, mlkernels.threads apply)

float32 AdamW against bfloat16 params with float32 states, through adam_run_bf16 (the
conversions inside its one loop, the default) and through the block path of half_unit
(blocks widened on the stack, ``_optim.set_run_bf16(False)``), with and without master
weights. The cases alternate round after round (interleaved samples); medians of the times
and of the per-round ratios float32 / case are printed. Only the avx512 variant takes
adam_run_bf16 by default (``MLK_BF16_IN_LOOP``); this script switches it on and off in
any variant (MLKERNELS_ISA=avx2 ...).
"""
import sys
import time

import ml_dtypes
import numpy as np

from mlkernels import optim
from mlkernels._dispatch import K

N = 16 * 2**20
BF16 = np.dtype(ml_dtypes.bfloat16)


def arrays(pdt, master=False):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(N).astype(np.float32).astype(pdt)
    g = rng.standard_normal(N).astype(np.float32).astype(pdt)
    m, v = np.zeros(N, np.float32), np.zeros(N, np.float32)
    return p, g, m, v, ({"master_params": [p.astype(np.float32)]} if master else {})


def case(data, in_loop=True):
    """A step on ``data`` (the two paths of one dtype share their arrays: placed elsewhere
    in memory, the same path ran up to 15% apart)."""
    p, g, m, v, kw = data
    step = [0]

    def run():
        K._optim.set_run_bf16(in_loop)
        step[0] += 1
        optim.adamw_step(p, g, m, v, step=step[0], lr=1e-4, **kw)
    return run


def main(rounds):
    bf16, bf16_master = arrays(BF16), arrays(BF16, master=True)
    cases = {"float32": case(arrays(np.float32)),
             "bf16, in the loop": case(bf16),
             "bf16, blocks": case(bf16, in_loop=False),
             "bf16 master, in the loop": case(bf16_master),
             "bf16 master, blocks": case(bf16_master, in_loop=False)}
    default = K._optim.set_run_bf16(True)
    times = {k: [] for k in cases}
    for run in cases.values():
        run()                                          # (first touch, outside the samples)
    for _ in range(rounds):
        for name, run in cases.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    K._optim.set_run_bf16(default)
    f32 = np.array(times["float32"])
    for name, ts in times.items():
        ts = np.array(ts)
        print(f"{name:26s} {np.median(ts) * 1e3:8.2f} ms   float32 / this: median "
              f"{np.median(f32) / np.median(ts):.2f}x, per round {np.median(f32 / ts):.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
