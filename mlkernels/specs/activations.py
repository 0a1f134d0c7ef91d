"""Spec rows of the activation family: every activation forward and backward.

Rows tagged "elementwise" also run the elementwise battery (tests/test_elementwise_battery.py):
SIMD tail sizes, strides with NaN in the gaps, in-place and shifted outputs, special values.
"""
from __future__ import annotations

import numpy as np
import scipy.special as sp

from .. import activations as fast
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none

# (row name, function name, keyword parameters)
ACTIVATIONS = [
    ("relu", "relu", {}),
    ("leaky_relu", "leaky_relu", {"negative_slope": 0.1}),
    ("elu", "elu", {"alpha": 1.3}),
    ("selu", "selu", {}),
    ("gelu", "gelu", {"approximate": "none"}),
    ("gelu[tanh]", "gelu", {"approximate": "tanh"}),
    ("silu", "silu", {}),
    ("swish", "swish", {"beta": 1.7}),
    ("sigmoid", "sigmoid", {}),
    ("tanh", "tanh", {}),
    ("softplus", "softplus", {"beta": 2.0, "threshold": 15.0}),
]
SHAPES = [(0,), (1,), (7,), (8,), (9,), (15,), (16,), (17,), (31,), (32,), (33,), (812,), (),
          (3, 4, 5), (1029, 917), (40000,)]
ELEMENTWISE = frozenset({"elementwise"})


def _x(rng, dtype, shape):
    return np.asarray(rng.standard_normal(shape) * 4, dtype=dtype)   # 0-d stays an array


def _forward_row(row, name, params):
    def make_args(rng, dtype, shape):
        return (_x(rng, dtype, shape),), dict(params)
    return KernelSpec(row, "activations", getattr(fast, name), getattr(ref, name), make_args,
                      SHAPES, tags=ELEMENTWISE | {"unary"})


def _backward_row(row, name, params):
    f, fb = getattr(fast, name), getattr(fast, name + "_backward")

    def make_args(rng, dtype, shape):
        return (np.asarray(rng.standard_normal(shape), dtype), _x(rng, dtype, shape)), dict(params)

    def check(rng):
        x = rng.uniform(-3, 3, 24)
        x += np.sign(x) * 0.05                      # away from the kinks at 0
        gradcheck(lambda x: f(x, **params), lambda r, x: (fb(r, x, **params),), (x,), (0,))

    return KernelSpec(row + "_backward", "activations", fb, getattr(ref, name + "_backward"),
                      make_args, SHAPES, gradcheck=check, backward_of=row,
                      tags=ELEMENTWISE | {"binary"})


def _prelu_args(rng, dtype, shape):
    x = _x(rng, dtype, shape)
    channels = shape[1] if len(shape) >= 2 else 1
    n = channels if rng.integers(2) else 1
    return (x, rng.uniform(0.05, 0.5, n).astype(dtype)), {}


def _prelu_backward_args(rng, dtype, shape):
    (x, w), _ = _prelu_args(rng, dtype, shape)
    return (rng.standard_normal(shape).astype(dtype), x, w), {}


def _prelu_check(rng):
    x = rng.uniform(-3, 3, (3, 4, 2))
    x += np.sign(x) * 0.05
    w = rng.uniform(0.1, 0.4, 4)
    gradcheck(fast.prelu, lambda r, x, w: fast.prelu_backward(r, x, w), (x, w), (0, 1))


PRELU_SHAPES = [(0, 3), (1,), (5,), (2, 3), (4, 3, 5), (2, 7, 3, 3), (1, 1, 1)]

# ------------------------------------------------------------------ benchmarks
_NUMPY = {
    "relu": lambda x, y: np.maximum(x, 0, out=y),
    "leaky_relu": lambda x, y: np.where(x > 0, x, 0.1 * x),
    "elu": lambda x, y: np.where(x > 0, x, 1.3 * np.expm1(x)),
    "selu": lambda x, y: 1.0507 * np.where(x > 0, x, 1.6733 * np.expm1(x)),
    "gelu": lambda x, y: 0.5 * x * (1 + sp.erf(x / np.float32(np.sqrt(2)))),
    "gelu[tanh]": lambda x, y: 0.5 * x * (1 + np.tanh(np.float32(0.7978845608) *
                                                      (x + np.float32(0.044715) * x ** 3))),
    "silu": lambda x, y: x / (1 + np.exp(-x)),
    "swish": lambda x, y: x / (1 + np.exp(-1.7 * x)),
    "sigmoid": lambda x, y: sp.expit(x, out=y),
    "tanh": lambda x, y: np.tanh(x, out=y),
    "softplus": lambda x, y: np.logaddexp(0, 2 * x) / 2,
}
_NUMPY_BACKWARD = {
    "gelu": lambda g, x: g * (0.5 * (1 + sp.erf(x / np.float32(np.sqrt(2))))
                              + x * np.exp(-0.5 * x * x) * np.float32(0.3989422804)),
    "silu": lambda g, x: g * sp.expit(x) * (1 + x * (1 - sp.expit(x))),
    "relu": lambda g, x: np.where(x > 0, g, 0),
}
_TORCH = {"relu": "relu", "leaky_relu": "leaky_relu", "elu": "elu", "selu": "selu",
          "gelu": "gelu", "silu": "silu", "sigmoid": "sigmoid", "tanh": "tanh",
          "softplus": "softplus"}


_SELU = (1.6732632423543772, 1.0507009873554805)
_inputs_cache = {}


def _bench_inputs(n, dtype):
    """x = 3·N(0, 1), g = N(0, 1) and an output buffer, shared by every activation row (one
    set per size and dtype, not one per row: 16M float64 is 128 MiB an array)."""
    key = (n, np.dtype(dtype))
    if key not in _inputs_cache:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(n) * 3).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        _inputs_cache[key] = (x, g, np.empty_like(x))
    return _inputs_cache[key]


def _torch_out(torch, row, params, backward, tg, tx, ty):
    """PyTorch's kernel for this row writing into ``ty`` (out=), or None where torch has no
    such kernel (swish) or this torch version lacks the operator. The backward is the aten
    operator autograd calls; for sigmoid and tanh it takes the forward's output (here x's
    values stand in: the arithmetic is the same)."""
    nn, aten = torch._C._nn, torch.ops.aten
    slope, alpha = params.get("negative_slope", 0.01), params.get("alpha", 1.0)
    beta, threshold = params.get("beta", 1.0), params.get("threshold", 20.0)
    approx = params.get("approximate", "none")
    forward = {
        "relu": lambda: torch.clamp_min(tx, 0, out=ty),
        "leaky_relu": lambda: nn.leaky_relu(tx, slope, out=ty),
        "elu": lambda: nn.elu(tx, alpha, 1.0, 1.0, out=ty),
        "selu": lambda: nn.elu(tx, _SELU[0], _SELU[1], 1.0, out=ty),
        "gelu": lambda: nn.gelu(tx, approximate=approx, out=ty),
        "gelu[tanh]": lambda: nn.gelu(tx, approximate=approx, out=ty),
        "silu": lambda: nn.silu(tx, out=ty),
        "sigmoid": lambda: torch.sigmoid(tx, out=ty),
        "tanh": lambda: torch.tanh(tx, out=ty),
        "softplus": lambda: nn.softplus(tx, beta, threshold, out=ty),
    }
    backward_ops = {
        "relu": lambda: aten.threshold_backward.grad_input(tg, tx, 0.0, grad_input=ty),
        "leaky_relu": lambda: aten.leaky_relu_backward.grad_input(tg, tx, slope, False,
                                                                  grad_input=ty),
        "elu": lambda: aten.elu_backward.grad_input(tg, alpha, 1.0, 1.0, False, tx,
                                                    grad_input=ty),
        "selu": lambda: aten.elu_backward.grad_input(tg, _SELU[0], _SELU[1], 1.0, False, tx,
                                                     grad_input=ty),
        "gelu": lambda: aten.gelu_backward.grad_input(tg, tx, approximate=approx,
                                                      grad_input=ty),
        "gelu[tanh]": lambda: aten.gelu_backward.grad_input(tg, tx, approximate=approx,
                                                            grad_input=ty),
        "silu": lambda: aten.silu_backward.grad_input(tg, tx, grad_input=ty),
        "sigmoid": lambda: aten.sigmoid_backward.grad_input(tg, tx, grad_input=ty),
        "tanh": lambda: aten.tanh_backward.grad_input(tg, tx, grad_input=ty),
        "softplus": lambda: aten.softplus_backward.grad_input(tg, tx, beta, threshold,
                                                              grad_input=ty),
    }
    fn = (backward_ops if backward else forward).get(row)
    if fn is None:
        return None
    try:
        fn()
    except Exception:                    # an operator this torch version spells differently
        return None
    return fn


def _float64_case(row, name, params, n, backward):
    """The float64 case: mlkernels and PyTorch, both with out=, against a copy of the same
    bytes (1 copy for a forward, 1.5 for a backward: it reads two arrays and writes one)."""
    x, g, y = _bench_inputs(n, np.float64)
    f = getattr(fast, name + ("_backward" if backward else ""))
    impls = {"mlkernels": (lambda: f(g, x, **params, out=y)) if backward
             else (lambda: f(x, **params, out=y))}
    torch = torch_or_none()
    if torch is not None:
        tx, tg, ty = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(y)
        fn = _torch_out(torch, row, params, backward, tg, tx, ty)
        if fn is not None:
            impls["torch (out=)"] = fn
    return BenchCase(f"float64 {n // 2**20}M", impls, dtype="float64", shape=(n,),
                     nbytes=(24.0 if backward else 16.0) * n,
                     copy_nbytes=8 * n, copy_factor=1.5 if backward else 1.0)


def _bench_forward(row, name, params):
    def bench(quick):
        n = (4 if quick else 16) * 2**20
        x, _, y = _bench_inputs(n, np.float32)
        f = getattr(fast, name)
        impls = {"mlkernels": lambda: f(x, **params, out=y),
                 "mlkernels (no out=)": lambda: f(x, **params),
                 "numpy": lambda: _NUMPY[row](x, y)}
        torch = torch_or_none()
        if torch is not None:
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            if row == "gelu[tanh]":
                impls["torch"] = lambda: torch.nn.functional.gelu(tx, approximate="tanh")
            elif row in _TORCH:
                tf = getattr(torch.nn.functional, _TORCH[row])
                tp = {k: v for k, v in params.items() if k != "approximate"}
                impls["torch"] = lambda: tf(tx, **tp)
            fn = _torch_out(torch, row, params, False, None, tx, ty)
            if fn is not None:
                impls["torch (out=)"] = fn
        cases = [BenchCase(f"float32 {n // 2**20}M", impls, shape=(n,), nbytes=8.0 * n,
                           copy_nbytes=4 * n, copy_factor=1.0)]
        if row in ("gelu", "relu"):
            x8, y8 = x[:8].copy(), np.empty(8, np.float32)
            cases.append(BenchCase("float32 8 elements (per-call cost)", shape=(8,), impls={
                "mlkernels": lambda: f(x8, **params, out=y8),
                "numpy ufunc np.negative(out=)": lambda: np.negative(x8, out=y8)}))
        cases.append(_float64_case(row, name, params, n, backward=False))
        return cases
    return bench


def _bench_backward(row, name, params):
    def bench(quick):
        n = (4 if quick else 16) * 2**20
        x, g, y = _bench_inputs(n, np.float32)
        fb = getattr(fast, name + "_backward")
        impls = {"mlkernels": lambda: fb(g, x, **params, out=y)}
        if row in _NUMPY_BACKWARD:
            impls["numpy"] = lambda: _NUMPY_BACKWARD[row](g, x)
        torch = torch_or_none()
        if torch is not None:
            tg, tx, ty = torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(y)
            if row in ("gelu", "gelu[tanh]"):
                approx = params["approximate"]
                impls["torch"] = lambda: torch.ops.aten.gelu_backward(tg, tx, approximate=approx)
            fn = _torch_out(torch, row, params, True, tg, tx, ty)
            if fn is not None:
                impls["torch (out=)"] = fn
        return [BenchCase(f"float32 {n // 2**20}M", impls, shape=(n,), nbytes=12.0 * n,
                          copy_nbytes=4 * n, copy_factor=1.5),
                _float64_case(row, name, params, n, backward=True)]
    return bench


SPECS = []
for _row, _name, _params in ACTIVATIONS:
    SPECS.append(_forward_row(_row, _name, _params))
    SPECS[-1] = KernelSpec(**{**SPECS[-1].__dict__, "bench": _bench_forward(_row, _name, _params)})
    SPECS.append(_backward_row(_row, _name, _params))
    SPECS[-1] = KernelSpec(**{**SPECS[-1].__dict__,
                              "bench": _bench_backward(_row, _name, _params)})
SPECS += [
    KernelSpec("prelu", "activations", fast.prelu, ref.prelu, _prelu_args, PRELU_SHAPES),
    KernelSpec("prelu_backward", "activations", fast.prelu_backward, ref.prelu_backward,
               _prelu_backward_args, PRELU_SHAPES, gradcheck=_prelu_check, backward_of="prelu",
               scale=lambda a, k: [None, np.abs(a[0].astype(np.float64)
                                                * a[1].astype(np.float64)).sum()]),
]
