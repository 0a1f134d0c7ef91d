"""Spec rows of the linear family."""
from __future__ import annotations

import numpy as np

from ..linear import linear, linear_backward
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none


def _forward_args(rng, dtype, shape):
    """shape = (*leading, in_features, out_features)."""
    *lead, k, n = shape
    x = rng.standard_normal((*lead, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    return (x, w, b), {}


def _backward_args(rng, dtype, shape):
    (x, w, _), _ = _forward_args(rng, dtype, shape)
    g = rng.standard_normal(x.shape[:-1] + (w.shape[0],)).astype(dtype)
    return (g, x, w), {}


def _matmul_scale(x, w):
    """A sum's rounding error is bounded relative to Σ|terms| (not to |Σ terms|, which can
    cancel to ~0): the error scale of a matmul is |x|·|W|ᵀ."""
    x, w = np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64))
    return x @ w.T


def _forward_scale(args, kwargs):
    x, w, b = args
    return [_matmul_scale(x, w) + (0 if b is None else np.abs(b))]


def _backward_scale(args, kwargs):
    g, x, w = args
    rows = int(np.prod(x.shape[:-1]))
    g2 = np.abs(g.reshape(rows, w.shape[0]).astype(np.float64))
    x2 = np.abs(x.reshape(rows, w.shape[1]).astype(np.float64))
    return [(g2 @ np.abs(w.astype(np.float64))).reshape(x.shape), g2.T @ x2, g2.sum(axis=0)]


def _gradcheck(rng):
    x = rng.standard_normal((2, 3, 5))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4)
    gradcheck(linear, lambda r, x, w, b: linear_backward(r, x, w), (x, w, b), (0, 1, 2))


SHAPES = [(1, 1, 1), (3, 5, 7), (13, 17, 11), (0, 4, 3), (4, 0, 3), (4, 3, 0), (2, 3, 7, 5),
          (2, 0, 4, 3), (64, 97, 33), (128, 256, 64)]


def _bench_forward(quick):
    cases = []
    torch = torch_or_none()
    for m, k, n in [(4096, 1024, 1024), (64, 256, 256)]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        y = np.empty((m, n), np.float32)
        impls = {
            "mlkernels": lambda x=x, w=w, b=b, y=y: linear(x, w, b, out=y),
            "numpy x@W.T+b": lambda x=x, w=w, b=b: x @ w.T + b,
            "numpy matmul(out=), no bias": lambda x=x, w=w, y=y: np.matmul(x, w.T, out=y),
        }
        if torch is not None:
            tx, tw, tb, ty = (torch.from_numpy(a) for a in (x, w, b, y))
            impls["torch"] = lambda tx=tx, tw=tw, tb=tb: torch.nn.functional.linear(tx, tw, tb)
        cases.append(BenchCase(f"float32 {m}x{k} -> {n}", impls, flops=2.0 * m * k * n,
                               nbytes=4.0 * (m * k + n * k + m * n)))
    return cases


def _bench_backward(quick):
    cases = []
    torch = torch_or_none()
    for m, k, n in [(4096, 1024, 1024), (64, 256, 256)]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        g = rng.standard_normal((m, n), dtype=np.float32)
        outs = (np.empty_like(x), np.empty_like(w), np.empty(n, np.float32))
        impls = {
            "mlkernels": lambda g=g, x=x, w=w, outs=outs: linear_backward(g, x, w, out=outs),
            "numpy": lambda g=g, x=x, w=w: (g @ w, g.T @ x, g.sum(axis=0)),
        }
        if torch is not None:
            tg, tx, tw = (torch.from_numpy(a) for a in (g, x, w))
            impls["torch"] = lambda tg=tg, tx=tx, tw=tw: (tg @ tw, tg.T @ tx, tg.sum(0))
        cases.append(BenchCase(f"float32 {m}x{k} -> {n}", impls, flops=4.0 * m * k * n,
                               nbytes=4.0 * (2 * m * k + 2 * n * k + m * n)))
    return cases


SPECS = [
    KernelSpec("linear", "linear", linear, ref.linear, _forward_args, SHAPES,
               scale=_forward_scale, bench=_bench_forward),
    KernelSpec("linear_backward", "linear", linear_backward, ref.linear_backward,
               _backward_args, SHAPES, scale=_backward_scale, gradcheck=_gradcheck,
               bench=_bench_backward, backward_of="linear"),
]
