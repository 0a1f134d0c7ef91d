"""Spec rows of dropout: forward (training, p = 1, eval) and backward.

Rows tagged "elementwise" run the elementwise battery too; p, seed and offset travel as
keyword arguments, so the battery sees x (or grad_out) as the only array.
The reference (mlkernels/reference/dropout.py) regenerates the very same mask with a NumPy
Philox, so these rows compare exactly what the kernel computes.
"""
from __future__ import annotations

import numpy as np

from ..dropout import dropout, dropout_backward
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none
from .storage16 import with_storage16
from .activations import SHAPES

ELEMENTWISE = frozenset({"elementwise"})


def _mask_kwargs(rng, p):
    return dict(p=p, seed=int(rng.integers(0, 2**63)) * 2 + int(rng.integers(2)),
                offset=int(rng.integers(0, 2**40)))


def _forward_args(p, training=True):
    def make(rng, dtype, shape):
        x = np.asarray(rng.standard_normal(shape) * 3, dtype)
        kw = _mask_kwargs(rng, p)
        if not training:
            kw["training"] = False
        return (x,), kw
    return make


def _backward_args(p):
    def make(rng, dtype, shape):
        return (np.asarray(rng.standard_normal(shape), dtype),), _mask_kwargs(rng, p)
    return make


def _check(rng):
    x = rng.standard_normal((7, 9))
    for p, seed, offset in ((0.3, 1, 0), (0.5, 2**64 - 1, 12345), (0.0, 5, 0), (1.0, 5, 0)):
        gradcheck(lambda x: dropout(x, p, seed, offset=offset),
                  lambda r, x: (dropout_backward(r, p, seed, offset=offset),), (x,), (0,))


def _bench_forward(quick):
    n = (4 if quick else 16) * 2**20
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    rng = np.random.default_rng(1)
    impls = {"mlkernels": lambda: dropout(x, 0.1, 1234, out=y),
             "mlkernels (no out=)": lambda: dropout(x, 0.1, 1234),
             "numpy (Generator.random)": lambda: x * ((rng.random(n, np.float32) >= 0.1)
                                                      * np.float32(1 / 0.9))}
    torch = torch_or_none()
    if torch is not None:
        tx = torch.from_numpy(x)
        impls["torch"] = lambda: torch.nn.functional.dropout(tx, 0.1)
    return [BenchCase(f"float32 {n // 2**20}M, p=0.1", impls, nbytes=8.0 * n,
                      copy_nbytes=4 * n, copy_factor=1.0)]


def _bench_backward(quick):
    n = (4 if quick else 16) * 2**20
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    mask = (np.random.default_rng(1).random(n, np.float32) >= 0.1) * np.float32(1 / 0.9)
    y = np.empty_like(g)
    impls = {"mlkernels (mask regenerated)": lambda: dropout_backward(g, 0.1, 1234, out=y),
             "numpy (stored mask)": lambda: np.multiply(g, mask, out=y)}
    torch = torch_or_none()
    if torch is not None:
        tg, tm = torch.from_numpy(g), torch.from_numpy(mask.astype(bool))
        impls["torch (stored mask)"] = lambda: torch.ops.aten.native_dropout_backward(
            tg, tm, 1 / 0.9)
    return [BenchCase(f"float32 {n // 2**20}M, p=0.1", impls, nbytes=8.0 * n,
                      copy_nbytes=4 * n, copy_factor=1.0)]


SPECS = [
    KernelSpec("dropout", "dropout", dropout, ref.dropout, _forward_args(0.3), SHAPES,
               tags=ELEMENTWISE, bench=with_storage16(_bench_forward, "dropout")),
    KernelSpec("dropout[p=0.9]", "dropout", dropout, ref.dropout, _forward_args(0.9),
               SHAPES[:12], tags=ELEMENTWISE),
    KernelSpec("dropout[p=1]", "dropout", dropout, ref.dropout, _forward_args(1.0),
               SHAPES[:12], tags=ELEMENTWISE),
    KernelSpec("dropout[p=0]", "dropout", dropout, ref.dropout, _forward_args(0.0),
               SHAPES[:12], tags=ELEMENTWISE),
    KernelSpec("dropout[eval]", "dropout", dropout, ref.dropout,
               _forward_args(0.5, training=False), SHAPES[:12], tags=ELEMENTWISE),
    KernelSpec("dropout_backward", "dropout", dropout_backward, ref.dropout_backward,
               _backward_args(0.3), SHAPES, gradcheck=_check, backward_of="dropout",
               tags=ELEMENTWISE, bench=_bench_backward),
]
