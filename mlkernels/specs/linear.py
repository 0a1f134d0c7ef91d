"""Spec rows of the linear family."""
from __future__ import annotations

import numpy as np

from ..activations import FUSED_WITH_LINEAR
from ..linear import linear, linear_backward
from .. import reference as ref
from ..testing import gradcheck
from .storage16 import with_storage16
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
        cases.append(BenchCase(f"float32 {m}x{k} -> {n}", impls, shape=(m, k, n), flops=2.0 * m * k * n,
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
        cases.append(BenchCase(f"float32 {m}x{k} -> {n}", impls, shape=(m, k, n), flops=4.0 * m * k * n,
                               nbytes=4.0 * (2 * m * k + 2 * n * k + m * n)))
    return cases


# ------------------------------------------------------------------ fused linear + activation

def _fused_args(activation):
    def make(rng, dtype, shape):
        (x, w, b), _ = _forward_args(rng, dtype, shape)
        return (x, w * np.asarray(0.3, dtype), b), {"activation": activation}
    return make


def _fused_ref(x, w, b, activation):
    _, name, kw = FUSED_WITH_LINEAR[activation]
    return getattr(ref, name)(ref.linear(x, w, b), **kw)


def _fused_bwd_args(activation):
    def make(rng, dtype, shape):
        (x, w, b), kw = _fused_args(activation)(rng, dtype, shape)
        _, z = linear(x, w, b, activation=activation, return_preactivation=True)
        g = np.asarray(rng.standard_normal(z.shape), dtype)
        return (g, x, w), {"activation": activation, "preactivation": z}
    return make


def _fused_bwd_ref(g, x, w, activation, preactivation):
    _, name, kw = FUSED_WITH_LINEAR[activation]
    return ref.linear_backward(getattr(ref, name + "_backward")(g, preactivation, **kw), x, w)


def _fused_scale(args, kwargs):
    # the activation's derivatives are bounded (|gelu'| < 1.13): the product's error scale
    # carries over, times that bound
    return [1.2 * s for s in _forward_scale(args, kwargs)]


def _fused_bwd_scale(args, kwargs):
    return [1.2 * s for s in _backward_scale(args, kwargs)]


def _fused_check(activation):
    def check(rng):
        x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)

        def bwd(r, x, w, b):
            _, z = linear(x, w, b, activation=activation, return_preactivation=True)
            return linear_backward(r, x, w, activation=activation, preactivation=z)
        gradcheck(lambda x, w, b: linear(x, w, b, activation=activation), bwd, (x, w, b),
                  (0, 1, 2))
    return check


def _bench_fused(quick):
    from ..activations import gelu
    m, k, n = 4096, 1024, 1024
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.03)
    b = rng.standard_normal(n, dtype=np.float32)
    y = np.empty((m, n), np.float32)

    def two_calls():
        linear(x, w, b, out=y)
        gelu(y, out=y)
    impls = {"mlkernels fused": lambda: linear(x, w, b, activation="gelu", out=y),
             "mlkernels linear then gelu": two_calls,
             "numpy": lambda: ref.gelu(x @ w.T + b)}
    torch = torch_or_none()
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        impls["torch"] = lambda: torch.nn.functional.gelu(torch.nn.functional.linear(tx, tw, tb))
    return [BenchCase(f"float32 {m}x{k} -> {n} + gelu", impls, shape=(m, k, n), flops=2.0 * m * k * n,
                      nbytes=4.0 * (m * k + n * k + m * n))]


SPECS = [
    KernelSpec("linear", "linear", linear, ref.linear, _forward_args, SHAPES,
               scale=_forward_scale, bench=with_storage16(_bench_forward, "linear")),
    KernelSpec("linear_backward", "linear", linear_backward, ref.linear_backward,
               _backward_args, SHAPES, scale=_backward_scale, gradcheck=_gradcheck,
               bench=with_storage16(_bench_backward, "linear_backward"), backward_of="linear"),
]
for _act in FUSED_WITH_LINEAR:
    SPECS += [
        KernelSpec(f"linear[{_act}]", "linear", linear, _fused_ref, _fused_args(_act), SHAPES,
                   scale=_fused_scale, bench=_bench_fused if _act == "gelu" else None),
        KernelSpec(f"linear_backward[{_act}]", "linear", linear_backward, _fused_bwd_ref,
                   _fused_bwd_args(_act), SHAPES, scale=_fused_bwd_scale,
                   gradcheck=_fused_check(_act),
                   backward_of=f"linear[{_act}]"),
    ]
