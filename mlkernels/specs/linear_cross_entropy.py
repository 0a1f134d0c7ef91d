"""Spec rows of the fused linear + cross-entropy (family "loss").

A "shape" is ``(*leading, in_features, num_classes)``: x has shape (*leading, in_features)
and the target (*leading). make_args draws the reduction, the label smoothing, the bias (or
None) and a chunk size (None, or a few rows, so that small inputs take several chunks).
"""
from __future__ import annotations

import numpy as np

from ..fused import (linear_cross_entropy, linear_cross_entropy_backward,
                     linear_cross_entropy_with_grad)
from ..loss import cross_entropy, cross_entropy_backward
from ..linear import linear, linear_backward
from .. import reference as ref
from ..reference.loss import _lce_rows
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none

SHAPES = [(1, 1, 1), (7, 5, 11), (33, 16, 50), (0, 4, 6), (5, 0, 7), (2, 3, 8, 13),
          (64, 32, 1000), (1, 3, 2), (300, 8, 3)]


def _args(rng, dtype, shape):
    *lead, d, V = shape
    x = np.asarray(rng.standard_normal((*lead, d)), dtype)
    w = np.asarray(rng.standard_normal((V, d)) / np.sqrt(max(d, 1)) * 2, dtype)
    b = np.asarray(rng.standard_normal(V), dtype) if rng.integers(2) else None
    t = rng.integers(0, max(V, 1), lead)
    if t.size and rng.integers(2):
        t.reshape(-1)[0] = -100                                       # one ignored target
    kwargs = dict(reduction=["mean", "sum", "none"][int(rng.integers(3))],
                  label_smoothing=[0.0, 0.1][int(rng.integers(2))],
                  chunk_rows=[None, 1, 3, 16][int(rng.integers(4))])
    return (x, w, t, b), kwargs


def _backward_args(rng, dtype, shape):
    (x, w, t, b), kw = _args(rng, dtype, shape)
    g = np.asarray(rng.standard_normal(t.shape), dtype) if kw["reduction"] == "none" \
        else np.asarray(1.5, dtype)
    return (g, x, w, t, b), kw


def _logit_error_scale(x, w, b):
    """Per row, the largest |x|·|W_c| + |b_c|: what a float32 logit's rounding is relative to."""
    d = w.shape[1]
    xa = np.abs(x.astype(np.float64)).reshape(int(np.prod(x.shape[:-1])), d)
    z = xa @ np.abs(w.astype(np.float64)).T + (0 if b is None else np.abs(b.astype(np.float64)))
    return z.max(axis=1) if z.shape[1] else np.zeros(z.shape[0])


def _scale(args, kwargs):
    x, w, t, b = args
    per_row = 2 * _logit_error_scale(x, w, b)          # lse and the target's logit
    red = kwargs["reduction"]
    if red == "none":
        return [per_row.reshape(t.shape)]
    return [per_row.sum() if red == "sum" else per_row.mean() if per_row.size else 0.0]


def _backward_scale(args, kwargs):
    """dz = softmax − onehot moves by ~2·δ·p for a logit error δ: the products' scales are
    those of |dz| times (1 + 2δ)."""
    g, x, w, t, b = args
    kw = {k: v for k, v in kwargs.items() if k != "chunk_rows"}
    rows = x.reshape(int(np.prod(x.shape[:-1])), w.shape[1]).astype(np.float64)
    _, logits, tt = _lce_rows(x, w, t, b)
    gg = g.astype(np.float64).reshape(-1) if kwargs["reduction"] == "none" else float(g)
    dz = np.abs(ref.cross_entropy_backward(gg, logits, tt, **kw))
    grow = 1 + 2 * (_logit_error_scale(x, w, b).max() if rows.shape[0] else 0.0)
    wa = np.abs(w.astype(np.float64))
    return [grow * (dz @ wa).reshape(x.shape), grow * dz.T @ np.abs(rows),
            None if b is None else grow * dz.sum(axis=0)]


def _check(rng):
    x, w, b = rng.standard_normal((5, 3)), rng.standard_normal((7, 3)), rng.standard_normal(7)
    t = np.array([0, 6, -100, 3, 3])
    for kw in (dict(reduction="mean", label_smoothing=0.1, chunk_rows=2),
               dict(reduction="none", chunk_rows=None), dict(reduction="sum", chunk_rows=1)):
        gradcheck(lambda x, w, b: linear_cross_entropy(x, w, t, b, **kw),
                  lambda r, x, w, b: linear_cross_entropy_backward(
                      r if kw["reduction"] == "none" else float(r), x, w, t, b, **kw),
                  (x, w, b), (0, 1, 2))


def _with_grad_args(rng, dtype, shape):
    (g, x, w, t, b), kw = _backward_args(rng, dtype, shape)
    return (x, w, t, b), dict(kw, grad_out=g)


def _with_grad_reference(x, w, t, b, grad_out, **kw):
    return (ref.linear_cross_entropy(x, w, t, b, **kw),
            *ref.linear_cross_entropy_backward(grad_out, x, w, t, b, **kw))


def _with_grad_scale(args, kwargs):
    x, w, t, b = args
    kw = {k: v for k, v in kwargs.items() if k != "grad_out"}
    return _scale(args, kw) + _backward_scale((kwargs["grad_out"], x, w, t, b), kw)


def _with_grad_check(rng):
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((6, 3)), rng.standard_normal(6)
    t = np.array([5, -100, 0, 2])
    for kw in (dict(reduction="mean", label_smoothing=0.1, chunk_rows=3), dict(reduction="sum")):
        gradcheck(lambda x, w, b: linear_cross_entropy(x, w, t, b, **kw),
                  lambda r, x, w, b: linear_cross_entropy_with_grad(
                      x, w, t, b, grad_out=float(r), **kw)[1:], (x, w, b), (0, 1, 2))


# ------------------------------------------------------------------ benchmarks

def _problem(quick):
    N, d, V = (1024, 256, 8192) if quick else (4096, 768, 32768)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, d), dtype=np.float32)
    w = rng.standard_normal((V, d), dtype=np.float32) * np.float32(0.02)
    b = rng.standard_normal(V, dtype=np.float32) * np.float32(0.1)
    t = rng.integers(0, V, N)
    return N, d, V, x, w, b, t


def _numpy_lce(x, w, b, t):
    """What a NumPy user writes (float32 throughout): the logits, then a stable mean CE."""
    logits = x @ w.T + b
    m = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
    return (lse - logits[np.arange(len(t)), t]).mean()


def _bench_forward(quick):
    N, d, V, x, w, b, t = _problem(quick)
    impls = {"mlkernels fused": lambda: linear_cross_entropy(x, w, t, b),
             "mlkernels linear + cross_entropy": lambda: cross_entropy(linear(x, w, b), t),
             "numpy": lambda: _numpy_lce(x, w, b, t)}
    torch = torch_or_none()
    if torch is not None:
        tx, tw, tb, tt = (torch.from_numpy(a) for a in (x, w, b, t))
        impls["torch linear + cross_entropy"] = lambda: torch.nn.functional.cross_entropy(
            torch.nn.functional.linear(tx, tw, tb), tt)
    return [BenchCase(f"float32 N={N} d={d} V={V}", impls, flops=2.0 * N * d * V,
                      nbytes=4.0 * (N * d + V * d), measure_memory=True)]


def _bench_backward(quick):
    N, d, V, x, w, b, t = _problem(quick)
    logits = linear(x, w, b)                  # kept from the forward by the unfused version

    def unfused():
        dz = cross_entropy_backward(1.0, logits, t)
        return linear_backward(dz, x, w)
    impls = {"mlkernels fused (recomputes logits)":
             lambda: linear_cross_entropy_backward(1.0, x, w, t, b),
             "mlkernels cross_entropy_backward + linear_backward": unfused}
    torch = torch_or_none()
    if torch is not None:
        tx, tw, tb, tt = (torch.from_numpy(a) for a in (x, w, b, t))
        tw.requires_grad_(True)
        tx.requires_grad_(True)

        def torch_backward():
            tx.grad = tw.grad = None
            torch.nn.functional.cross_entropy(torch.nn.functional.linear(tx, tw, tb),
                                              tt).backward()
        impls["torch forward + autograd backward"] = torch_backward
    return [BenchCase(f"float32 N={N} d={d} V={V}", impls, flops=4.0 * N * d * V,
                      nbytes=4.0 * (2 * N * d + 2 * V * d), measure_memory=True)]


def _bench_training_step(quick):
    """Loss and gradients, as a training step needs them: the fused value-and-grad, the fused
    forward then backward, and linear + cross_entropy then their backwards."""
    N, d, V, x, w, b, t = _problem(quick)

    def unfused():
        logits = linear(x, w, b)
        loss = cross_entropy(logits, t)
        return loss, linear_backward(cross_entropy_backward(1.0, logits, t), x, w)

    def fused_twice():
        return (linear_cross_entropy(x, w, t, b),
                linear_cross_entropy_backward(1.0, x, w, t, b))
    impls = {"mlkernels fused with_grad": lambda: linear_cross_entropy_with_grad(x, w, t, b),
             "mlkernels fused forward + backward": fused_twice,
             "mlkernels linear + cross_entropy + backwards": unfused}
    torch = torch_or_none()
    if torch is not None:
        tx, tw, tb, tt = (torch.from_numpy(a) for a in (x, w, b, t))
        tw.requires_grad_(True)
        tx.requires_grad_(True)

        def torch_step():
            tx.grad = tw.grad = None
            loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(tx, tw, tb), tt)
            loss.backward()
            return loss
        impls["torch forward + autograd backward"] = torch_step
    return [BenchCase(f"float32 N={N} d={d} V={V}", impls, flops=6.0 * N * d * V,
                      nbytes=4.0 * (2 * N * d + 2 * V * d), measure_memory=True)]


SPECS = [
    KernelSpec("linear_cross_entropy", "loss", linear_cross_entropy, ref.linear_cross_entropy,
               _args, SHAPES, scale=_scale, bench=_bench_forward),
    KernelSpec("linear_cross_entropy_backward", "loss", linear_cross_entropy_backward,
               ref.linear_cross_entropy_backward, _backward_args, SHAPES,
               scale=_backward_scale, gradcheck=_check, backward_of="linear_cross_entropy",
               bench=_bench_backward),
    KernelSpec("linear_cross_entropy_with_grad", "loss", linear_cross_entropy_with_grad,
               _with_grad_reference, _with_grad_args, SHAPES, scale=_with_grad_scale,
               gradcheck=_with_grad_check, backward_of="linear_cross_entropy",
               bench=_bench_training_step),
]
