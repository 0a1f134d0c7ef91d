"""Spec rows of the normalization family."""
from __future__ import annotations

import numpy as np

from .. import norm as fast
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none
from .storage16 import with_storage16


def _arr(rng, shape, dtype, scale=1.0, offset=0.0):
    return np.asarray(rng.standard_normal(shape) * scale + offset, dtype)


# ------------------------------------------------------------------ LayerNorm / RMSNorm
# shape = (*lead, *normalized); the last k dims are normalized, k = 1 or 2
LN_SHAPES = [(1, 1), (2, 3), (5, 8), (3, 4, 17), (2, 3, 4, 5), (64, 33), (0, 7), (4, 1),
             (16, 1024), (2, 1, 3), (11, 6)]


def _ln_args(rng, dtype, shape):
    norm = shape[-2:] if len(shape) >= 3 else shape[-1:]
    x = _arr(rng, shape, dtype, 2.0, 0.5)
    w = _arr(rng, norm, dtype, 0.5, 1.0) if rng.integers(3) else None
    b = _arr(rng, norm, dtype) if rng.integers(3) else None
    return (x, norm, w, b, 1e-5), {}


def _ln_bwd_args(rng, dtype, shape):
    (x, norm, w, b, eps), _ = _ln_args(rng, dtype, shape)
    _, mean, rstd = fast.layer_norm(x, norm, w, b, eps)
    return (_arr(rng, shape, dtype), x, norm, mean, rstd, w), {"has_bias": b is not None}


def _ln_check(rng):
    x = rng.standard_normal((3, 5)) * 2
    w, b = rng.standard_normal(5), rng.standard_normal(5)

    def bwd(r, x, w, b):
        _, mean, rstd = fast.layer_norm(x, 5, w, b)
        return fast.layer_norm_backward(r, x, 5, mean, rstd, w, has_bias=True)
    gradcheck(lambda x, w, b: fast.layer_norm(x, 5, w, b), bwd, (x, w, b), (0, 1, 2))


def _rms_args(rng, dtype, shape):
    norm = shape[-1:]
    return (_arr(rng, shape, dtype, 2.0, 0.5), norm,
            _arr(rng, norm, dtype, 0.5, 1.0) if rng.integers(2) else None), {}


def _rms_bwd_args(rng, dtype, shape):
    (x, norm, w), _ = _rms_args(rng, dtype, shape)
    _, rstd = fast.rms_norm(x, norm, w)
    return (_arr(rng, shape, dtype), x, norm, rstd, w), {}


def _rms_check(rng):
    x = rng.standard_normal((3, 6)) + 0.5
    w = rng.standard_normal(6)

    def bwd(r, x, w):
        _, rstd = fast.rms_norm(x, 6, w)
        return fast.rms_norm_backward(r, x, 6, rstd, w)
    gradcheck(lambda x, w: fast.rms_norm(x, 6, w), bwd, (x, w), (0, 1))


# ------------------------------------------------------------------ GroupNorm
GN_SHAPES = [(2, 4, 3), (1, 6, 2, 2), (3, 8), (2, 4, 1, 1), (0, 4, 3), (4, 12, 5, 5),
             (2, 2, 1)]


def _gn_args(rng, dtype, shape):
    C = shape[1]
    groups = [g for g in range(1, C + 1) if C % g == 0][int(rng.integers(0, 2)) - 1]
    x = _arr(rng, shape, dtype, 2.0, 0.5)
    w = _arr(rng, (C,), dtype, 0.5, 1.0) if rng.integers(3) else None
    b = _arr(rng, (C,), dtype) if rng.integers(3) else None
    return (x, groups, w, b, 1e-5), {}


def _gn_bwd_args(rng, dtype, shape):
    (x, groups, w, b, eps), _ = _gn_args(rng, dtype, shape)
    _, mean, rstd = fast.group_norm(x, groups, w, b, eps)
    return (_arr(rng, shape, dtype), x, groups, mean, rstd, w), {"has_bias": b is not None}


def _gn_check(rng):
    x = rng.standard_normal((2, 4, 3))
    w, b = rng.standard_normal(4), rng.standard_normal(4)

    def bwd(r, x, w, b):
        _, mean, rstd = fast.group_norm(x, 2, w, b)
        return fast.group_norm_backward(r, x, 2, mean, rstd, w, has_bias=True)
    gradcheck(lambda x, w, b: fast.group_norm(x, 2, w, b), bwd, (x, w, b), (0, 1, 2))


# ------------------------------------------------------------------ BatchNorm
BN_SHAPES = [(2, 1), (5, 3), (4, 3, 7), (2, 4, 3, 3), (8, 2, 1, 1), (64, 40), (3, 17, 5)]


def _bn_args(training):
    def make(rng, dtype, shape):
        C = shape[1]
        x = _arr(rng, shape, dtype, 2.0, 0.5)
        rm, rv = _arr(rng, (C,), dtype, 0.1), np.asarray(rng.uniform(0.5, 2, C), dtype)
        w = _arr(rng, (C,), dtype, 0.5, 1.0) if rng.integers(3) else None
        b = _arr(rng, (C,), dtype) if rng.integers(3) else None
        return (x, rm, rv, w, b, training, 0.1, 1e-5), {}
    return make


def _bn_fast(*args, **kwargs):
    """batch_norm, returning the updated running statistics as well."""
    y, m, r = fast.batch_norm(*args, **kwargs)
    return y, m, r, args[1], args[2]


def _bn_ref(*args, **kwargs):
    y, m, r = ref.batch_norm(*args, **kwargs)
    return y, m, r, args[1], args[2]


def _bn_bwd_args(training):
    def make(rng, dtype, shape):
        (x, rm, rv, w, b, tr, mom, eps), _ = _bn_args(training)(rng, dtype, shape)
        _, sm, sr = fast.batch_norm(x, rm, rv, w, b, training)
        return (_arr(rng, shape, dtype), x, sm, sr, w, training), {"has_bias": b is not None}
    return make


def _bn_check(training):
    def check(rng):
        x = rng.standard_normal((5, 3, 2))
        w, b = rng.standard_normal(3), rng.standard_normal(3)
        rm, rv = rng.standard_normal(3) * 0.1, rng.uniform(0.5, 2, 3)

        def fwd(x, w, b):
            return fast.batch_norm(x, rm.copy(), rv.copy(), w, b, training)

        def bwd(r, x, w, b):
            _, sm, sr = fwd(x, w, b)
            return fast.batch_norm_backward(r, x, sm, sr, w, training, has_bias=True)
        gradcheck(fwd, bwd, (x, w, b), (0, 1, 2))
    return check


# ------------------------------------------------------------------ error scales
# A backward's rounding error is relative to the size of the terms it combines, not to the
# result (which cancels to 0 for rows of one element): for grad_x that is
# rstd·(|ĝ| + mean|ĝ| + |x̂|·mean|ĝ·x̂|); for grad_weight Σ|g·x̂|; for grad_bias Σ|g|.

def _row_scale(g, x, mean, rstd, w, rows, cols, G, Cg, S, center):
    g2 = np.abs(g.astype(np.float64)).reshape(rows, Cg, S)
    x2 = x.astype(np.float64).reshape(rows, Cg, S)
    m = (mean.astype(np.float64) if mean is not None else np.zeros(rows)).reshape(rows, 1, 1)
    r = rstd.astype(np.float64).reshape(rows, 1, 1)
    ww = np.ones(G * Cg) if w is None else np.abs(w.astype(np.float64)).reshape(G * Cg)
    wrow = ww.reshape(G, Cg)[np.arange(rows) % G][:, :, None]
    gh = g2 * wrow
    xh = np.abs(x2 - m) * r
    gx = r * (gh + (gh.mean(axis=(1, 2), keepdims=True) if center else 0)
              + xh * (gh * xh).mean(axis=(1, 2), keepdims=True))
    gw = (g2 * xh).reshape(rows // G, G * Cg, S).sum(axis=(0, 2)) if rows else np.zeros(G * Cg)
    gb = g2.reshape(rows // G, G * Cg, S).sum(axis=(0, 2)) if rows else np.zeros(G * Cg)
    return gx.reshape(x.shape), gw, gb


def _ln_scale(args, kwargs):
    g, x, norm, mean, rstd, w = args
    cols = int(np.prod(norm))
    rows = x.size // cols if cols else 0
    gx, gw, gb = _row_scale(g, x, mean, rstd, w, rows, cols, 1, cols, 1, True)
    return [gx] + ([gw.reshape(norm)] if w is not None else []) + \
        ([gb.reshape(norm)] if kwargs.get("has_bias") else [])


def _rms_scale(args, kwargs):
    g, x, norm, rstd, w = args
    cols = int(np.prod(norm))
    rows = x.size // cols if cols else 0
    gx, gw, _ = _row_scale(g, x, None, rstd, w, rows, cols, 1, cols, 1, False)
    return [gx] + ([gw.reshape(norm)] if w is not None else [])


def _gn_scale(args, kwargs):
    g, x, G, mean, rstd, w = args
    N, C = x.shape[:2]
    S = int(np.prod(x.shape[2:]))
    gx, gw, gb = _row_scale(g, x, mean, rstd, w, N * G, (C // G) * S, G, C // G, S, True)
    return [gx] + ([gw] if w is not None else []) + ([gb] if kwargs.get("has_bias") else [])


def _bn_scale(args, kwargs):
    g, x, sm, sr, w, training = args
    N, C = x.shape[:2]
    S = int(np.prod(x.shape[2:]))
    g3 = np.abs(g.astype(np.float64)).reshape(N, C, S)
    x3 = x.astype(np.float64).reshape(N, C, S)
    r = sr.astype(np.float64)[None, :, None]
    ww = (np.ones(C) if w is None else np.abs(w.astype(np.float64)))[None, :, None]
    xh = np.abs(x3 - sm.astype(np.float64)[None, :, None]) * r
    gx = ww * r * (g3 + g3.mean(axis=(0, 2), keepdims=True)
                   + xh * (g3 * xh).mean(axis=(0, 2), keepdims=True))
    return [gx.reshape(x.shape)] + ([(g3 * xh).sum(axis=(0, 2))] if w is not None else []) + \
        ([g3.sum(axis=(0, 2))] if kwargs.get("has_bias") else [])


# ------------------------------------------------------------------ benchmarks

def _bench_ln(quick):
    torch = torch_or_none()
    m, n = (4096 if quick else 16384), 1024
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, n), dtype=np.float32)
    w = np.ones(n, np.float32)
    b = np.zeros(n, np.float32)
    outs = (np.empty_like(x), np.empty(m, np.float32), np.empty(m, np.float32))

    def numpy_ln():
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * w + b
    impls = {"mlkernels": lambda: fast.layer_norm(x, n, w, b, out=outs), "numpy": numpy_ln}
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        impls["torch"] = lambda: torch.nn.functional.layer_norm(tx, (n,), tw, tb)
    fwd = BenchCase(f"float32 {m}x{n}", impls, shape=(m, n), nbytes=8.0 * m * n,
                    copy_nbytes=4 * m * n)
    g = rng.standard_normal((m, n), dtype=np.float32)
    _, mean, rstd = fast.layer_norm(x, n, w, b)
    bouts = (np.empty_like(x), np.empty(n, np.float32), np.empty(n, np.float32))

    def numpy_ln_bwd():
        xhat = (x - mean[:, None]) * rstd[:, None]
        gh = g * w
        gx = rstd[:, None] * (gh - gh.mean(1, keepdims=True)
                              - xhat * (gh * xhat).mean(1, keepdims=True))
        return gx, (g * xhat).sum(0), g.sum(0)
    bimpls = {"mlkernels": lambda: fast.layer_norm_backward(g, x, n, mean, rstd, w,
                                                            has_bias=True, out=bouts),
              "numpy": numpy_ln_bwd}
    if torch is not None:
        tg, tm, tr = torch.from_numpy(g), torch.from_numpy(mean), torch.from_numpy(rstd)
        bimpls["torch"] = lambda: torch.ops.aten.native_layer_norm_backward(
            tg, tx, (n,), tm[:, None], tr[:, None], tw, tb, [True, True, True])
    bwd = BenchCase(f"float32 {m}x{n}", bimpls, shape=(m, n), nbytes=12.0 * m * n,
                    copy_nbytes=4 * m * n,
                    copy_factor=1.5)
    return fwd, bwd


def _bench_bn(quick):
    torch = torch_or_none()
    shapes = [(4096, 1024), (8, 64, 56, 56)] if quick else [(16384, 1024), (32, 64, 56, 56)]
    out = []
    for shape in shapes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        C = shape[1]
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
        outs = (np.empty_like(x), np.empty(C, np.float32), np.empty(C, np.float32))
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, C) + (1,) * (x.ndim - 2)

        def numpy_bn(x=x, axes=axes, bshape=bshape, w=w, b=b):
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
            return (x - mean) / np.sqrt(var + 1e-5) * w.reshape(bshape) + b.reshape(bshape)
        impls = {"mlkernels": lambda x=x, rm=rm, rv=rv, w=w, b=b, outs=outs:
                 fast.batch_norm(x, rm, rv, w, b, True, out=outs),
                 "numpy": numpy_bn}
        tx = None
        if torch is not None:
            tx, trm, trv, tw, tb = (torch.from_numpy(a) for a in (x, rm.copy(), rv.copy(), w, b))
            impls["torch"] = lambda tx=tx, trm=trm, trv=trv, tw=tw, tb=tb: \
                torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, True)
        label = "float32 " + "x".join(map(str, shape))
        fwd = BenchCase(label, impls, shape=x.shape, nbytes=8.0 * x.size, copy_nbytes=4 * x.size,
                        copy_factor=1.5)
        g = rng.standard_normal(shape, dtype=np.float32)
        _, sm, sr = fast.batch_norm(x, None, None, w, b, True)
        bouts = (np.empty_like(x), np.empty(C, np.float32), np.empty(C, np.float32))

        def numpy_bn_bwd(g=g, x=x, sm=sm, sr=sr, axes=axes, bshape=bshape, w=w):
            xhat = (x - sm.reshape(bshape)) * sr.reshape(bshape)
            gx = w.reshape(bshape) * sr.reshape(bshape) * (
                g - g.mean(axis=axes, keepdims=True)
                - xhat * (g * xhat).mean(axis=axes, keepdims=True))
            return gx, (g * xhat).sum(axis=axes), g.sum(axis=axes)
        bimpls = {"mlkernels": lambda g=g, x=x, sm=sm, sr=sr, w=w, bouts=bouts:
                  fast.batch_norm_backward(g, x, sm, sr, w, True, has_bias=True, out=bouts),
                  "numpy": numpy_bn_bwd}
        if torch is not None:
            tg, tsm, tsr = torch.from_numpy(g), torch.from_numpy(sm), torch.from_numpy(sr)
            bimpls["torch"] = lambda tg=tg, tx=tx, tw=tw, tsm=tsm, tsr=tsr: \
                torch.ops.aten.native_batch_norm_backward(tg, tx, tw, None, None, tsm, tsr,
                                                          True, 1e-5, [True, True, True])
        bwd = BenchCase(label, bimpls, shape=x.shape, nbytes=12.0 * x.size, copy_nbytes=4 * x.size,
                        copy_factor=2.5)
        out.append((fwd, bwd))
    return out


_CACHE = {}


def _bench(key, which):
    def bench(quick):
        if (key, quick) not in _CACHE:
            _CACHE[(key, quick)] = _bench_ln(quick) if key == "ln" else _bench_bn(quick)
        got = _CACHE[(key, quick)]
        return [got[which]] if key == "ln" else [pair[which] for pair in got]
    return bench


SPECS = [
    KernelSpec("layer_norm", "norm", fast.layer_norm, ref.layer_norm, _ln_args, LN_SHAPES,
               bench=with_storage16(_bench("ln", 0), "layer_norm")),
    KernelSpec("layer_norm_backward", "norm", fast.layer_norm_backward,
               ref.layer_norm_backward, _ln_bwd_args, LN_SHAPES, gradcheck=_ln_check,
               scale=_ln_scale,
               backward_of="layer_norm", bench=_bench("ln", 1)),
    KernelSpec("rms_norm", "norm", fast.rms_norm, ref.rms_norm, _rms_args, LN_SHAPES,
               bench=with_storage16(None, "rms_norm")),
    KernelSpec("rms_norm_backward", "norm", fast.rms_norm_backward, ref.rms_norm_backward,
               _rms_bwd_args, LN_SHAPES, gradcheck=_rms_check, backward_of="rms_norm",
               scale=_rms_scale),
    KernelSpec("group_norm", "norm", fast.group_norm, ref.group_norm, _gn_args, GN_SHAPES,
               bench=with_storage16(None, "group_norm")),
    KernelSpec("group_norm_backward", "norm", fast.group_norm_backward,
               ref.group_norm_backward, _gn_bwd_args, GN_SHAPES, gradcheck=_gn_check,
               backward_of="group_norm", scale=_gn_scale,
               bench=with_storage16(None, "group_norm_backward")),
    KernelSpec("batch_norm", "norm", _bn_fast, _bn_ref, _bn_args(True), BN_SHAPES,
               bench=with_storage16(_bench("bn", 0), "batch_norm")),
    KernelSpec("batch_norm[eval]", "norm", _bn_fast, _bn_ref, _bn_args(False), BN_SHAPES),
    KernelSpec("batch_norm_backward", "norm", fast.batch_norm_backward,
               ref.batch_norm_backward, _bn_bwd_args(True), BN_SHAPES,
               gradcheck=_bn_check(True), backward_of="batch_norm",
               bench=with_storage16(_bench("bn", 1), "batch_norm_backward"), scale=_bn_scale),
    KernelSpec("batch_norm_backward[eval]", "norm", fast.batch_norm_backward,
               ref.batch_norm_backward, _bn_bwd_args(False), BN_SHAPES,
               gradcheck=_bn_check(False), backward_of="batch_norm[eval]", scale=_bn_scale),
]
