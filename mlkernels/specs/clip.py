"""Spec rows of gradient clipping: ``clip_grad_norm_`` for each kind of norm.

A "shape" is a tuple of array shapes (the list of gradients), as for the optimizer rows. The
fast function clips in place and returns the norm; the rows wrap it to return
``(total_norm, grads...)`` in the reference's layout.
"""
from __future__ import annotations

import numpy as np

from ..clip import clip_grad_norm_, get_total_norm
from .. import reference as ref
from . import BenchCase, KernelSpec, torch_or_none
from .optim import SHAPES


def _args(norm_type, max_norm_factor):
    def make(rng, dtype, shapes):
        grads = [np.asarray(rng.standard_normal(s), dtype) for s in shapes]
        total = ref.get_total_norm(grads, norm_type)
        # clip (factor < 1) or not (factor > 1), relative to the actual norm
        max_norm = float(total) * max_norm_factor if np.isfinite(total) else 1.0
        return (grads, max_norm, norm_type), {}
    return make


def _fast(grads, max_norm, norm_type):
    total = clip_grad_norm_(grads, max_norm, norm_type)
    return (total, *grads)


def _reference(grads, max_norm, norm_type):
    total, clipped = ref.clip_grad_norm_(grads, max_norm, norm_type)
    return (np.float64(total), *clipped)


def _bench(quick):
    n = (4 if quick else 16) * 2**20
    rng = np.random.default_rng(0)
    sizes = np.full(100, n // 100)
    sizes[-1] += n - sizes.sum()
    grads = [rng.standard_normal(int(s), dtype=np.float32) * np.float32(1e-3) for s in sizes]
    total = float(get_total_norm(grads))
    flat = np.concatenate(grads)
    cases = []
    impls = {"mlkernels": lambda: clip_grad_norm_(grads, 2 * total),
             # (einsum: NumPy's own loop; np.dot would wake OpenBLAS's pool, whose threads
             # then spin for ~0.1 s on the cores the next implementation needs)
             "numpy sqrt(Σ g·g)": lambda: np.sqrt(sum(float(np.einsum("i,i->", g, g))
                                                      for g in grads))}
    torch = torch_or_none()
    if torch is not None:
        tparams = [torch.zeros(g.shape) for g in grads]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g)
        impls["torch"] = lambda: torch.nn.utils.clip_grad_norm_(tparams, 2 * total)
    # the roofline: one read of the 16M values, by the fastest reader we have (BLAS's dot,
    # threaded, on one contiguous array of the same size)
    cases.append(BenchCase(f"float32 {n // 2**20}M params in 100 arrays, no clipping", impls,
                           nbytes=4.0 * n, roofline=lambda: np.dot(flat, flat)))
    # clipping: the read, then a scaling pass (read and write); coef ≈ 1 - 1e-7 keeps the
    # values from shrinking over the repeated calls
    clip = {"mlkernels": lambda: clip_grad_norm_(grads, total * (1 - 1e-7))}
    if torch is not None:
        clip["torch"] = lambda: torch.nn.utils.clip_grad_norm_(tparams, total * (1 - 1e-7))
    cases.append(BenchCase(f"float32 {n // 2**20}M params in 100 arrays, clipping", clip,
                           nbytes=12.0 * n, roofline=lambda: np.dot(flat, flat),
                           copy_factor=3.0))
    return cases


SPECS = [
    KernelSpec("clip_grad_norm_", "clip", _fast, _reference, _args(2.0, 0.5), SHAPES,
               outputs=list, bench=_bench),
    KernelSpec("clip_grad_norm_[no clip]", "clip", _fast, _reference, _args(2.0, 2.0), SHAPES,
               outputs=list),
]
for _p in (1.0, np.inf, -np.inf, 0.0, 3.0, -1.5):
    SPECS.append(KernelSpec(f"clip_grad_norm_[p={_p}]", "clip", _fast, _reference,
                            _args(_p, 0.5), SHAPES, outputs=list))
