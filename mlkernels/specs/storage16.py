"""Bench cases of the 16-bit storage dtypes (bfloat16 of ml_dtypes, float16): a kernel on
16M elements in bfloat16 and float16 against the same kernel in float32 and PyTorch's
bfloat16 CPU kernel, in one run (interleaved samples). The rows of the families add them to
their own cases with ``with_storage16``; no spec rows here (their correctness tests are
tests/test_half_kernels.py). Skipped when ml_dtypes is not installed.
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from . import BenchCase, torch_or_none

SPECS: list = []


def _bf16():
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def _dtypes():
    bf16 = _bf16()
    return None if bf16 is None else {"bfloat16": bf16, "float16": np.dtype(np.float16),
                                      "float32": np.dtype(np.float32)}


def _case(label, n, make: Callable[[np.dtype], Callable[[], object]],
          torch_make=None, values_moved=2.0) -> List[BenchCase]:
    """make(dtype) -> the call on inputs of dtype; torch_make(torch_dtype) likewise; nbytes
    counts the bf16 traffic (values_moved values of 2 bytes per element)."""
    dtypes = _dtypes()
    if dtypes is None:
        return []
    impls: Dict[str, Callable[[], object]] = {}
    for name in ("bfloat16", "float32", "float16"):
        impls[f"mlkernels {name}"] = make(dtypes[name])
    torch = torch_or_none()
    if torch is not None and torch_make is not None:
        impls["torch bfloat16"] = torch_make(torch, torch.bfloat16)
        impls["torch float32"] = torch_make(torch, torch.float32)
    return [BenchCase(f"16-bit storage: {label}", impls, dtype="bfloat16",
                      nbytes=2.0 * values_moved * n, copy_nbytes=2 * n,
                      copy_factor=values_moved / 2)]


def _x(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
            .astype(dtype))


def _norm_cases(quick):
    from .. import norm
    rows, cols = (1024 if quick else 4096), 4096
    n = rows * cols

    def ln(dtype):
        x, w, b = _x((rows, cols), dtype), _x(cols, dtype, 1), _x(cols, dtype, 2)
        out = (np.empty_like(x), np.empty(rows, np.float32 if dtype.itemsize == 2 else dtype),
               np.empty(rows, np.float32 if dtype.itemsize == 2 else dtype))
        return lambda: norm.layer_norm(x, cols, w, b, out=out)

    def rms(dtype):
        x, w = _x((rows, cols), dtype), _x(cols, dtype, 1)
        out = (np.empty_like(x), np.empty(rows, np.float32 if dtype.itemsize == 2 else dtype))
        return lambda: norm.rms_norm(x, cols, w, 1e-6, out=out)

    def t_ln(torch, dt):
        x = torch.randn(rows, cols).to(dt)
        w, b = torch.randn(cols).to(dt), torch.randn(cols).to(dt)
        return lambda: torch.nn.functional.layer_norm(x, (cols,), w, b)

    def t_rms(torch, dt):
        x, w = torch.randn(rows, cols).to(dt), torch.randn(cols).to(dt)
        return lambda: torch.nn.functional.rms_norm(x, (cols,), w, 1e-6)
    return {"layer_norm": _case(f"layer_norm {rows}x{cols}", n, ln, t_ln),
            "rms_norm": _case(f"rms_norm {rows}x{cols}", n, rms, t_rms)}


def _group_norm_cases(quick):
    from .. import norm
    shape, G = ((8 if quick else 32), 64, 64, 64), 32
    n = int(np.prod(shape))

    def stats(dtype):
        return np.float32 if dtype.itemsize == 2 else dtype

    def fwd(dtype):
        x, w, b = _x(shape, dtype), _x(64, dtype, 1), _x(64, dtype, 2)
        out = (np.empty_like(x), np.empty((shape[0], G), stats(dtype)),
               np.empty((shape[0], G), stats(dtype)))
        return lambda: norm.group_norm(x, G, w, b, out=out)

    def bwd(dtype):
        x, g, w = _x(shape, dtype), _x(shape, dtype, 3), _x(64, dtype, 1)
        _, mean, rstd = norm.group_norm(x, G, w)
        out = (np.empty_like(x), np.empty(64, stats(dtype)), np.empty(64, stats(dtype)))
        return lambda: norm.group_norm_backward(g, x, G, mean, rstd, w, out=out)

    def t_fwd(torch, dt):
        x, w, b = torch.randn(*shape).to(dt), torch.randn(64).to(dt), torch.randn(64).to(dt)
        return lambda: torch.nn.functional.group_norm(x, G, w, b)
    label = f"{shape[0]}x64x64x64 G={G}"
    return {"group_norm": _case(f"group_norm {label}", n, fwd, t_fwd),
            "group_norm_backward": _case(f"group_norm_backward {label}", n, bwd, None, 3.0)}


def _batch_norm_cases(quick):
    """BatchNorm in training over 16M values, (64, 256, 32, 32) (S = 1024) and (16384, 1024)
    (S = 1): x read twice and y written (3 values moved), backward g and x read twice and
    grad_x written (5); running statistics float32, updated in place."""
    from .. import norm
    shapes = [((16 if quick else 64), 256, 32, 32), ((4096 if quick else 16384), 1024)]

    def stats(dtype):
        return np.float32 if dtype.itemsize == 2 else dtype

    def fwd(shape):
        def make(dtype):
            C = shape[1]
            x, w, b = _x(shape, dtype), _x(C, dtype, 1), _x(C, dtype, 2)
            rm, rv = np.zeros(C, stats(dtype)), np.ones(C, stats(dtype))
            out = (np.empty_like(x), np.empty(C, stats(dtype)), np.empty(C, stats(dtype)))
            return lambda: norm.batch_norm(x, rm, rv, w, b, True, out=out)
        return make

    def bwd(shape):
        def make(dtype):
            C = shape[1]
            x, g, w = _x(shape, dtype), _x(shape, dtype, 3), _x(C, dtype, 1)
            _, sm, sr = norm.batch_norm(x, None, None, w, None, True)
            out = (np.empty_like(x), np.empty(C, stats(dtype)), np.empty(C, stats(dtype)))
            return lambda: norm.batch_norm_backward(g, x, sm, sr, w, True, has_bias=True,
                                                    out=out)
        return make

    def t_fwd(shape):
        def make(torch, dt):
            C = shape[1]
            x, w, b = torch.randn(*shape).to(dt), torch.randn(C).to(dt), torch.randn(C).to(dt)
            rm, rv = torch.zeros(C).to(dt), torch.ones(C).to(dt)
            return lambda: torch.nn.functional.batch_norm(x, rm, rv, w, b, True)
        return make

    def t_bwd(shape):
        def make(torch, dt):
            C = shape[1]
            x = torch.randn(*shape).to(dt).requires_grad_()
            w, b = (torch.randn(C).to(dt).requires_grad_() for _ in range(2))
            y = torch.nn.functional.batch_norm(x, torch.zeros(C).to(dt), torch.ones(C).to(dt),
                                               w, b, True)
            g = torch.randn(*shape).to(dt)
            return lambda: torch.autograd.grad(y, (x, w, b), g, retain_graph=True)
        return make
    cases = {"batch_norm": [], "batch_norm_backward": []}
    for shape in shapes:
        n, label = int(np.prod(shape)), "x".join(map(str, shape))
        cases["batch_norm"] += _case(f"batch_norm {label}", n, fwd(shape), t_fwd(shape), 3.0)
        cases["batch_norm_backward"] += _case(f"batch_norm_backward {label}", n, bwd(shape),
                                              t_bwd(shape), 5.0)
    return cases


def _loss_cases(quick):
    from .. import loss
    rows, cols = (4096 if quick else 16384), 1024
    n = rows * cols

    def sm(fn):
        def make(dtype):
            x = _x((rows, cols), dtype)
            y = np.empty_like(x)
            return lambda: fn(x, -1, out=y)
        return make

    def ce(dtype):
        x = _x((rows, cols), dtype)
        t = np.random.default_rng(3).integers(0, cols, rows)
        return lambda: loss.cross_entropy(x, t)

    def t_sm(fn):
        def make(torch, dt):
            x = torch.randn(rows, cols).to(dt)
            return lambda: fn(x, -1)
        return make

    def t_ce(torch, dt):
        x = torch.randn(rows, cols).to(dt)
        t = torch.randint(0, cols, (rows,))
        return lambda: torch.nn.functional.cross_entropy(x, t)
    torch = torch_or_none()
    return {"softmax": _case(f"softmax {rows}x{cols}", n, sm(loss.softmax),
                             t_sm(torch.softmax) if torch else None),
            "log_softmax": _case(f"log_softmax {rows}x{cols}", n, sm(loss.log_softmax),
                                 t_sm(torch.log_softmax) if torch else None),
            "cross_entropy": _case(f"cross_entropy {rows}x{cols}", n, ce, t_ce, 1.0)}


def _dropout_cases(quick):
    from ..dropout import dropout as dropout_fn
    n = (4 if quick else 16) * 2**20

    def make(dtype):
        x = _x(n, dtype)
        y = np.empty_like(x)
        return lambda: dropout_fn(x, 0.1, 1234, out=y)

    def t_make(torch, dt):
        x = torch.randn(n).to(dt)
        return lambda: torch.nn.functional.dropout(x, 0.1)
    return {"dropout": _case(f"dropout {n // 2**20}M p=0.1", n, make, t_make)}


def _adamw_cases(quick):
    """AdamW over 16M params: bf16 params and grads with float32 states (2 + 2 + 4 + 4 bytes
    read and 2 + 4 + 4 written per param: 22) against float32 (4 + 4 + 4 + 4 read, 12
    written: 28), and the bf16 modes (master weights: + 4 + 4; bf16 states: 14)."""
    from ..optim import adamw_step
    dtypes = _dtypes()
    if dtypes is None:
        return {"adamw_step": []}
    n = (4 if quick else 16) * 2**20
    bf16 = dtypes["bfloat16"]

    def arrays(pdt, sdt):
        p, g = _x(n, pdt), _x(n, pdt, 1)
        return p, g, np.zeros(n, sdt), np.zeros(n, sdt)
    step = [0]

    def make(pdt, sdt, **kw):
        p, g, m, v = arrays(pdt, sdt)
        if kw.pop("master", False):
            kw["master_params"] = [p.astype(np.float32)]

        def run():
            step[0] += 1
            adamw_step(p, g, m, v, step=step[0] % 1000 + 1, lr=1e-4, **kw)
        return run
    impls = {"mlkernels bf16 params, f32 states": make(bf16, np.float32),
             "mlkernels float32": make(np.float32, np.float32),
             "mlkernels bf16 + master weights": make(bf16, np.float32, master=True),
             "mlkernels bf16 stochastic rounding": make(bf16, np.float32,
                                                        stochastic_rounding=True, seed=1),
             "mlkernels bf16 params, bf16 states": make(bf16, bf16)}
    torch = torch_or_none()
    if torch is not None:
        for name, dt in (("torch bf16 (fused)", torch.bfloat16), ("torch float32 (fused)",
                                                                   torch.float32)):
            p = torch.randn(n).to(dt).requires_grad_()
            p.grad = torch.randn(n).to(dt)
            opt = torch.optim.AdamW([p], lr=1e-4, fused=True)
            impls[name] = opt.step
    return {"adamw_step": [BenchCase(f"16-bit storage: AdamW {n // 2**20}M params", impls,
                                     dtype="bfloat16", nbytes=22.0 * n, copy_nbytes=2 * n,
                                     copy_factor=5.5)]}


def _rmsprop_adagrad_cases(quick):
    """RMSprop (no momentum, not centered: torch's defaults) and Adagrad over 16M params:
    bf16 params and grads with float32 states (2 + 2 + 4 bytes read and 2 + 4 written per
    param: 14) against float32 (12 + 8: 20), and the bf16 modes (master weights: + 4 + 4;
    bf16 states: 10). PyTorch: RMSprop foreach (it has no fused CPU path), Adagrad fused."""
    from ..optim import adagrad_step, rmsprop_step
    dtypes = _dtypes()
    if dtypes is None:
        return {"rmsprop_step": [], "adagrad_step": []}
    n = (4 if quick else 16) * 2**20
    bf16 = dtypes["bfloat16"]
    step = [0]

    def make(fn, pdt, sdt, **kw):
        p, g, s = _x(n, pdt), _x(n, pdt, 1), np.full(n, 0.1, sdt)
        if kw.pop("master", False):
            kw["master_params"] = [p.astype(np.float32)]

        def run():
            step[0] += 1
            fn(p, g, s, step=step[0] % 1000 + 1, lr=1e-4, **kw)
        return run
    torch = torch_or_none()
    cases = {}
    for kernel, fn, label, peer in (
            ("rmsprop_step", rmsprop_step, "RMSprop", "foreach"),
            ("adagrad_step", adagrad_step, "Adagrad", "fused")):
        impls = {"mlkernels bf16 params, f32 states": make(fn, bf16, np.float32),
                 "mlkernels float32": make(fn, np.float32, np.float32),
                 "mlkernels bf16 + master weights": make(fn, bf16, np.float32, master=True),
                 "mlkernels bf16 stochastic rounding": make(fn, bf16, np.float32,
                                                            stochastic_rounding=True, seed=1),
                 "mlkernels bf16 params, bf16 states": make(fn, bf16, bf16)}
        if torch is not None:
            for name, dt in ((f"torch bf16 ({peer})", torch.bfloat16),
                             (f"torch float32 ({peer})", torch.float32)):
                p = torch.randn(n).to(dt).requires_grad_()
                p.grad = torch.randn(n).to(dt)
                opt = getattr(torch.optim, label)([p], lr=1e-4, **{peer: True})
                impls[name] = opt.step
        cases[kernel] = [BenchCase(f"16-bit storage: {label} {n // 2**20}M params", impls,
                                   dtype="bfloat16", nbytes=14.0 * n, copy_nbytes=2 * n,
                                   copy_factor=3.5)]
    return cases


def _linear_cases(quick):
    """linear 4096x1024 -> 1024 (bias) and its backward: bf16 by vdpbf16ps products where the
    CPU has AVX-512 BF16, and by widening + sgemm (the path float16 and other CPUs take),
    against float32, float16 and PyTorch (oneDNN's bf16 products)."""
    import sys
    from ..linear import linear, linear_backward
    lin = sys.modules["mlkernels.linear"]
    dtypes = _dtypes()
    if dtypes is None:
        return {"linear": [], "linear_backward": []}
    M, K, N = (1024 if quick else 4096), 1024, 1024
    arrays = {}

    def inputs(dt):
        if dt not in arrays:
            arrays[dt] = (_x((M, K), dt), (_x((N, K), dt, 1) * 0.03).astype(dt), _x(N, dt, 2),
                          _x((M, N), dt, 3))
        return arrays[dt]

    def widened(call):
        def run():
            lin._BF16_PRODUCT = False
            try:
                call()
            finally:
                lin._BF16_PRODUCT = True
        return run

    def fwd(dt):
        x, w, b, _ = inputs(dt)
        y = np.empty((M, N), dt)
        return lambda: linear(x, w, b, out=y)

    def bwd(dt):
        x, w, _, g = inputs(dt)
        outs = (np.empty_like(x), np.empty_like(w), np.empty(N, dt))
        return lambda: linear_backward(g, x, w, out=outs)
    cases = {}
    for kernel, make in (("linear", fwd), ("linear_backward", bwd)):
        impls = {f"mlkernels {name}": make(dtypes[name])
                 for name in ("bfloat16", "float32", "float16")}
        impls["mlkernels bfloat16 widened + sgemm"] = widened(make(dtypes["bfloat16"]))
        torch = torch_or_none()
        if torch is not None:
            for name, tdt in (("torch bfloat16", torch.bfloat16),
                              ("torch float32", torch.float32)):
                tx = torch.randn(M, K).to(tdt).requires_grad_(kernel != "linear")
                tw = (torch.randn(N, K) * 0.03).to(tdt).requires_grad_(kernel != "linear")
                tb = torch.randn(N).to(tdt).requires_grad_(kernel != "linear")
                if kernel == "linear":
                    impls[name] = (lambda tx=tx, tw=tw, tb=tb, torch=torch:
                                   torch.nn.functional.linear(tx, tw, tb))
                else:
                    ty = torch.nn.functional.linear(tx, tw, tb)
                    tg = torch.randn(M, N).to(tdt)
                    impls[name] = (lambda ty=ty, tg=tg, ins=(tx, tw, tb), torch=torch:
                                   torch.autograd.grad(ty, ins, tg, retain_graph=True))
        flops = 2.0 * M * N * K * (1 if kernel == "linear" else 2)
        cases[kernel] = [BenchCase(f"16-bit storage: {kernel} {M}x{K}->{N}", impls,
                                   dtype="bfloat16", flops=flops)]
    return cases


def _embedding_cases(quick):
    """GPT-2's token embedding: 16384 (or 4096) indices into 50257 x 768. Forward: the rows
    copied (2 bytes a value read and written in 16 bits); backward: grad_out 16-bit, grad_weight
    float32 (the default) or 16-bit (``out=``), against float32 throughout."""
    from ..embedding import embedding, embedding_backward
    dtypes = _dtypes()
    if dtypes is None:
        return {"embedding": [], "embedding_backward": []}
    V, d, n = 50257, 768, (4096 if quick else 16384)
    idx = np.random.default_rng(0).integers(0, V, n)

    def forward(dtype):
        w, y = _x((V, d), dtype), np.empty((n, d), dtype)
        return lambda: embedding(idx, w, out=y)

    def t_forward(torch, dt):
        w, ti = torch.randn(V, d).to(dt), torch.from_numpy(idx)
        return lambda: torch.nn.functional.embedding(ti, w)
    backward = {}
    for name in ("bfloat16", "float16", "float32"):
        for out_name in (("float32", name) if name != "float32" else ("float32",)):
            g, gw = _x((n, d), dtypes[name]), np.zeros((V, d), dtypes[out_name])
            backward[f"mlkernels {name} -> {out_name}"] = (
                lambda g=g, gw=gw: embedding_backward(g, idx, V, out=gw))
    return {"embedding": _case(f"embedding {n}x{d} of {V} rows", n * d, forward, t_forward),
            "embedding_backward": [BenchCase(
                f"16-bit storage: embedding_backward {n}x{d} into {V} rows", backward,
                dtype="bfloat16", nbytes=2.0 * n * d + 2.0 * V * d, copy_nbytes=2 * V * d,
                copy_factor=1.0)]}


#: the activation rows (spec row names) with a 16-bit case: the issue's memory-bound and
#: arithmetic-bound examples
ACTIVATION_ROWS = ("relu", "leaky_relu", "gelu", "silu", "tanh")


def activation_cases(row: str, name: str, params: dict, backward: bool,
                     quick: bool) -> List[BenchCase]:
    """An activation forward (x -> y) or backward ((grad_out, x) -> grad_x) over 16M values,
    out= given: mlkernels in bfloat16, float32 and float16; PyTorch's bfloat16 and float32
    CPU kernels (their out= forms where torch has one, as the float32 cases do)."""
    from .. import activations
    from .activations import torch_peers
    n = (4 if quick else 16) * 2**20
    f = getattr(activations, name + ("_backward" if backward else ""))
    key = "backward" if backward else "forward"

    def make(dtype):
        x, g = (_x(n, np.float32) * 3).astype(dtype), _x(n, dtype, 1)
        y = np.empty_like(x)
        return (lambda: f(g, x, **params, out=y)) if backward else \
            (lambda: f(x, **params, out=y))

    def t_make(torch, dt):
        x, g = (torch.randn(n) * 3).to(dt), torch.randn(n).to(dt)
        peers = torch_peers(row, torch, x, g, torch.empty_like(x), **params)
        return peers.get(key + " out=") or peers[key]
    label = f"{row}{'_backward' if backward else ''} {n // 2**20}M"
    return _case(label, n, make, t_make, 3.0 if backward else 2.0)


_BUILDERS = {"embedding": _embedding_cases, "embedding_backward": _embedding_cases,
             "adamw_step": _adamw_cases, "rmsprop_step": _rmsprop_adagrad_cases,
             "adagrad_step": _rmsprop_adagrad_cases, "layer_norm": _norm_cases,
             "rms_norm": _norm_cases,
             "group_norm": _group_norm_cases, "group_norm_backward": _group_norm_cases,
             "batch_norm": _batch_norm_cases, "batch_norm_backward": _batch_norm_cases,
             "softmax": _loss_cases,
             "log_softmax": _loss_cases, "cross_entropy": _loss_cases,
             "dropout": _dropout_cases, "linear": _linear_cases,
             "linear_backward": _linear_cases}


def storage16_cases(kernel: str, quick: bool) -> List[BenchCase]:
    """The 16-bit storage bench case of `kernel` (one of _BUILDERS), [] without ml_dtypes."""
    return _BUILDERS[kernel](quick)[kernel]


def with_storage16(bench, kernel: str):
    """A spec row's bench function, plus the 16-bit storage case of `kernel`."""
    def both(quick):
        return (list(bench(quick)) if bench is not None else []) + storage16_cases(kernel, quick)
    return both
