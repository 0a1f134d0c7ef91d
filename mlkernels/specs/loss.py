"""Spec rows of the softmax and loss family."""
from __future__ import annotations

import numpy as np

from .. import loss as fast
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none
from .storage16 import with_storage16

SM_SHAPES = [(1, 1), (3, 5), (4, 17), (2, 3, 9), (0, 4), (7, 1000), (33,), (5, 0)]
CE_SHAPES = [(1, 1), (4, 5), (16, 10), (3, 4, 6), (0, 3), (64, 1000), (1, 7)]
PAIR_SHAPES = [(0,), (1,), (7,), (4, 5), (2, 3, 4), (1000,), ()]


def _arr(rng, shape, dtype, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype)


def _sm_args(axis):
    def make(rng, dtype, shape):
        ax = axis if len(shape) > 1 else -1
        return (_arr(rng, shape, dtype, 3.0), ax), {}
    return make


def _sm_bwd_args(log_, axis):
    def make(rng, dtype, shape):
        (x, ax), _ = _sm_args(axis)(rng, dtype, shape)
        y = (fast.log_softmax if log_ else fast.softmax)(x, ax)
        return (_arr(rng, shape, dtype), y, ax), {}
    return make


def _sm_check(log_):
    f, fb = (fast.log_softmax, fast.log_softmax_backward) if log_ else \
        (fast.softmax, fast.softmax_backward)

    def check(rng):
        x = rng.standard_normal((3, 5))
        gradcheck(lambda x: f(x, 1), lambda r, x: (fb(r, f(x, 1), 1),), (x,), (0,))
        gradcheck(lambda x: f(x, 0), lambda r, x: (fb(r, f(x, 0), 0),), (x,), (0,))
    return check


def _ce_args(rng, dtype, shape):
    C = shape[1] if len(shape) > 1 else shape[0]
    x = _arr(rng, shape, dtype, 3.0)
    tshape = (shape[0],) + tuple(shape[2:])
    t = rng.integers(0, max(C, 1), tshape)
    if t.size and rng.integers(2):
        t.reshape(-1)[0] = -100                                      # one ignored target
    kwargs = dict(reduction=["mean", "sum", "none"][int(rng.integers(3))],
                  label_smoothing=[0.0, 0.1][int(rng.integers(2))])
    return (x, t), kwargs


def _ce_bwd_args(rng, dtype, shape):
    (x, t), kw = _ce_args(rng, dtype, shape)
    g = _arr(rng, (shape[0],) + tuple(shape[2:]), dtype) if kw["reduction"] == "none" \
        else np.asarray(1.5, dtype)
    return (g, x, t), kw


def _ce_check(rng):
    x = rng.standard_normal((4, 5))
    t = np.array([0, 3, -100, 4])
    for kw in (dict(reduction="mean", label_smoothing=0.1), dict(reduction="none")):
        gradcheck(lambda x: fast.cross_entropy(x, t, **kw),
                  lambda r, x: (fast.cross_entropy_backward(r, x, t, **kw),), (x,), (0,))


def _pair_args(rng, dtype, shape):
    kw = dict(reduction=["mean", "sum", "none"][int(rng.integers(3))])
    return (_arr(rng, shape, dtype, 2.0), _arr(rng, shape, dtype)), kw


def _pair_bwd_args(rng, dtype, shape):
    (x, t), kw = _pair_args(rng, dtype, shape)
    g = _arr(rng, shape, dtype) if kw["reduction"] == "none" else np.asarray(0.7, dtype)
    return (g, x, t), kw


def _pair_check(f, fb):
    def check(rng):
        x, t = rng.standard_normal(6) * 2, rng.uniform(0, 1, 6)
        for red in ("mean", "none"):
            gradcheck(lambda x: f(x, t, red), lambda r, x: (fb(r, x, t, red),), (x,), (0,))
    return check


def _bench(quick):
    torch = torch_or_none()
    cases = {}
    for m, c in ([(1024, 1000), (64, 32000)] if quick else [(4096, 1000), (256, 32000)]):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, c), dtype=np.float32)
        y = np.empty_like(x)
        t = rng.integers(0, c, m)

        def numpy_softmax(x=x):
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        def numpy_ce(x=x, t=t):
            mx = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - mx).sum(axis=1)) + mx[:, 0]
            return (lse - x[np.arange(len(t)), t]).mean()
        sm = {"mlkernels": lambda x=x, y=y: fast.softmax(x, out=y), "numpy": numpy_softmax}
        ce = {"mlkernels": lambda x=x, t=t: fast.cross_entropy(x, t), "numpy": numpy_ce}
        if torch is not None:
            tx, tt = torch.from_numpy(x), torch.from_numpy(t)
            sm["torch"] = lambda tx=tx: torch.softmax(tx, 1)
            ce["torch"] = lambda tx=tx, tt=tt: torch.nn.functional.cross_entropy(tx, tt)
        label = f"float32 {m}x{c}"
        cases.setdefault("softmax", []).append(
            BenchCase(label, sm, shape=(m, c), nbytes=8.0 * m * c, copy_nbytes=4 * m * c))
        cases.setdefault("cross_entropy", []).append(
            BenchCase(label, ce, shape=(m, c), nbytes=4.0 * m * c, copy_nbytes=4 * m * c,
                      copy_factor=0.5))
    return cases


_CACHE = {}


def _bench_for(name):
    def bench(quick):
        if quick not in _CACHE:
            _CACHE[quick] = _bench(quick)
        return _CACHE[quick][name]
    return bench


SPECS = [
    KernelSpec("softmax", "loss", fast.softmax, ref.softmax, _sm_args(-1), SM_SHAPES,
               bench=with_storage16(_bench_for("softmax"), "softmax")),
    KernelSpec("softmax[axis=0]", "loss", fast.softmax, ref.softmax, _sm_args(0), SM_SHAPES),
    KernelSpec("softmax_backward", "loss", fast.softmax_backward, ref.softmax_backward,
               _sm_bwd_args(False, -1), SM_SHAPES, gradcheck=_sm_check(False),
               backward_of="softmax"),
    KernelSpec("log_softmax", "loss", fast.log_softmax, ref.log_softmax, _sm_args(-1),
               SM_SHAPES, bench=with_storage16(None, "log_softmax")),
    KernelSpec("log_softmax_backward", "loss", fast.log_softmax_backward,
               ref.log_softmax_backward, _sm_bwd_args(True, 0), SM_SHAPES,
               gradcheck=_sm_check(True), backward_of="log_softmax"),
    KernelSpec("cross_entropy", "loss", fast.cross_entropy, ref.cross_entropy, _ce_args,
               CE_SHAPES, bench=with_storage16(_bench_for("cross_entropy"), "cross_entropy")),
    KernelSpec("cross_entropy_backward", "loss", fast.cross_entropy_backward,
               ref.cross_entropy_backward, _ce_bwd_args, CE_SHAPES, gradcheck=_ce_check,
               backward_of="cross_entropy"),
    KernelSpec("mse_loss", "loss", fast.mse_loss, ref.mse_loss, _pair_args, PAIR_SHAPES),
    KernelSpec("mse_loss_backward", "loss", fast.mse_loss_backward, ref.mse_loss_backward,
               _pair_bwd_args, PAIR_SHAPES,
               gradcheck=_pair_check(fast.mse_loss, fast.mse_loss_backward),
               backward_of="mse_loss"),
    KernelSpec("binary_cross_entropy_with_logits", "loss",
               fast.binary_cross_entropy_with_logits, ref.binary_cross_entropy_with_logits,
               _pair_args, PAIR_SHAPES),
    KernelSpec("binary_cross_entropy_with_logits_backward", "loss",
               fast.binary_cross_entropy_with_logits_backward,
               ref.binary_cross_entropy_with_logits_backward, _pair_bwd_args, PAIR_SHAPES,
               gradcheck=_pair_check(fast.binary_cross_entropy_with_logits,
                                     fast.binary_cross_entropy_with_logits_backward),
               backward_of="binary_cross_entropy_with_logits"),
]
