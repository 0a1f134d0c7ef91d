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


def _bench_forward(row, name, params):
    def bench(quick):
        n = (4 if quick else 16) * 2**20
        x = (np.random.default_rng(0).standard_normal(n) * 3).astype(np.float32)
        y = np.empty_like(x)
        f = getattr(fast, name)
        impls = {"mlkernels": lambda: f(x, **params, out=y),
                 "mlkernels (no out=)": lambda: f(x, **params),
                 "numpy": lambda: _NUMPY[row](x, y)}
        torch = torch_or_none()
        if torch is not None:
            tx = torch.from_numpy(x)
            if row == "gelu[tanh]":
                impls["torch"] = lambda: torch.nn.functional.gelu(tx, approximate="tanh")
            elif row in _TORCH:
                tf = getattr(torch.nn.functional, _TORCH[row])
                tp = {k: v for k, v in params.items() if k != "approximate"}
                impls["torch"] = lambda: tf(tx, **tp)
        cases = [BenchCase(f"float32 {n // 2**20}M", impls, shape=(n,), nbytes=8.0 * n,
                           copy_nbytes=4 * n, copy_factor=1.0)]
        if row in ("gelu", "relu"):
            x8, y8 = x[:8].copy(), np.empty(8, np.float32)
            cases.append(BenchCase("float32 8 elements (per-call cost)", shape=(8,), impls={
                "mlkernels": lambda: f(x8, **params, out=y8),
                "numpy ufunc np.negative(out=)": lambda: np.negative(x8, out=y8)}))
        return cases
    return bench


def _bench_backward(row, name, params):
    def bench(quick):
        n = (4 if quick else 16) * 2**20
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(n) * 3).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        y = np.empty_like(x)
        fb = getattr(fast, name + "_backward")
        impls = {"mlkernels": lambda: fb(g, x, **params, out=y)}
        if row in _NUMPY_BACKWARD:
            impls["numpy"] = lambda: _NUMPY_BACKWARD[row](g, x)
        torch = torch_or_none()
        if torch is not None and row in ("gelu", "gelu[tanh]"):
            tg, tx = torch.from_numpy(g), torch.from_numpy(x)
            approx = params["approximate"]
            impls["torch"] = lambda: torch.ops.aten.gelu_backward(tg, tx, approximate=approx)
        return [BenchCase(f"float32 {n // 2**20}M", impls, shape=(n,), nbytes=12.0 * n,
                          copy_nbytes=4 * n, copy_factor=1.5)]
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
