# Generated from mlkernels/_activation_table.py by mlkernels/_generate.py
# (template: mlkernels/specs/activations.py.tp); do not edit.
"""Spec rows of the activation family: every activation forward and backward.

Rows tagged "elementwise" also run the elementwise battery (tests/test_elementwise_battery.py):
SIMD tail sizes, strides with NaN in the gaps, in-place and shifted outputs, special values.
The rows, the keyword arguments they test, the gradient checks' kinks and the bench's NumPy
and PyTorch peers come from mlkernels/_activation_table.py.
"""
from __future__ import annotations

import numpy as np
import scipy.special as sp

from .. import activations as fast
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, storage16, torch_or_none

# (row name, function name, keyword parameters tested, where the derivative jumps)
ACTIVATIONS = [
    ("relu", "relu", {}, (0.0,)),
    ("leaky_relu", "leaky_relu", {"negative_slope": 0.1}, (0.0,)),
    ("elu", "elu", {"alpha": 1.3}, (0.0,)),
    ("selu", "selu", {}, (0.0,)),
    ("gelu", "gelu", {"approximate": "none"}, ()),
    ("gelu[tanh]", "gelu", {"approximate": "tanh"}, ()),
    ("silu", "silu", {}, ()),
    ("swish", "swish", {"beta": 1.7}, ()),
    ("sigmoid", "sigmoid", {}, ()),
    ("tanh", "tanh", {}, ()),
    ("softplus", "softplus", {"beta": 2.0, "threshold": 15.0}, ()),
    ("hardswish", "hardswish", {}, (-3.0, 3.0)),
    ("hardsigmoid", "hardsigmoid", {}, (-3.0, 3.0)),
    ("mish", "mish", {}, ()),
]
#: the public functions, in the table's order
FUNCTIONS = ["relu", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "sigmoid", "tanh",
             "softplus", "hardswish", "hardsigmoid", "mish"]
SHAPES = [(0,), (1,), (7,), (8,), (9,), (15,), (16,), (17,), (31,), (32,), (33,), (812,), (),
          (3, 4, 5), (1029, 917), (40000,)]
ELEMENTWISE = frozenset({"elementwise"})


def _x(rng, dtype, shape):
    return np.asarray(rng.standard_normal(shape) * 4, dtype=dtype)   # 0-d stays an array


def _forward_row(row, name, params):
    def make_args(rng, dtype, shape):
        return (_x(rng, dtype, shape),), dict(params)
    return KernelSpec(row, "activations", getattr(fast, name), getattr(ref, name), make_args,
                      SHAPES, tags=ELEMENTWISE | {"forward"})


def _backward_row(row, name, params, kinks):
    f, fb = getattr(fast, name), getattr(fast, name + "_backward")

    def make_args(rng, dtype, shape):
        return (np.asarray(rng.standard_normal(shape), dtype), _x(rng, dtype, shape)), dict(params)

    def check(rng):
        x = rng.uniform(-4, 4, 24)
        for kink in kinks:                          # at least 0.05 away from every kink
            near = np.abs(x - kink) < 0.05
            x[near] = kink + np.where(x[near] < kink, -0.05, 0.05)
        gradcheck(lambda x: f(x, **params), lambda r, x: (fb(r, x, **params),), (x,), (0,))

    return KernelSpec(row + "_backward", "activations", fb, getattr(ref, name + "_backward"),
                      make_args, SHAPES, gradcheck=check, backward_of=row,
                      tags=ELEMENTWISE | {"backward"})


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

# ------------------------------------------------------------------ benchmark peers
# What the bench times beside mlkernels, per row: NumPy's composition (forward over x with
# the output buffer y; backward over g and x), and PyTorch's kernels (x, g, y tensors): the
# functional op, its out= form, the aten backward autograd calls and its out= form. The
# parameters are keyword arguments, defaulting to the values this row means.
SQRT2, INV_SQRT_2PI = np.float32(np.sqrt(2)), np.float32(0.3989422804)
SQRT_2_OVER_PI, GELU_C = np.float32(0.7978845608), np.float32(0.044715)
SELU = (1.6732632423543772, 1.0507009873554805)     # (α, λ): torch's selu is elu(x, *SELU, 1.0)


def _numpy_relu(x, g, y):
    return {"forward": lambda: np.maximum(x, 0, out=y),
            "backward": lambda: np.where(x > 0, g, 0)}


def _torch_relu(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.relu(x),
            "forward out=": lambda: torch.clamp_min(x, 0, out=y),
            "backward": lambda: aten.threshold_backward(g, x, 0),
            "backward out=": lambda: aten.threshold_backward.grad_input(g, x, 0.0, grad_input=y)}


def _numpy_leaky_relu(x, g, y, negative_slope=0.01):
    return {"forward": lambda: np.where(x > 0, x, negative_slope * x),
            "backward": None}


def _torch_leaky_relu(torch, x, g, y, negative_slope=0.01):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.leaky_relu(x, negative_slope),
            "forward out=": lambda: nn.leaky_relu(x, negative_slope, out=y),
            "backward": lambda: aten.leaky_relu_backward(g, x, negative_slope, False),
            "backward out=":
            lambda: aten.leaky_relu_backward.grad_input(g, x, negative_slope, False, grad_input=y)}


def _numpy_elu(x, g, y, alpha=1.0):
    return {"forward": lambda: np.where(x > 0, x, alpha * np.expm1(x)),
            "backward": None}


def _torch_elu(torch, x, g, y, alpha=1.0):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.elu(x, alpha),
            "forward out=": lambda: nn.elu(x, alpha, 1.0, 1.0, out=y),
            "backward": lambda: aten.elu_backward(g, alpha, 1.0, 1.0, False, x),
            "backward out=":
            lambda: aten.elu_backward.grad_input(g, alpha, 1.0, 1.0, False, x, grad_input=y)}


def _numpy_selu(x, g, y):
    return {"forward": lambda: 1.0507 * np.where(x > 0, x, 1.6733 * np.expm1(x)),
            "backward": None}


def _torch_selu(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.selu(x),
            "forward out=": lambda: nn.elu(x, *SELU, 1.0, out=y),
            "backward": lambda: aten.elu_backward(g, *SELU, 1.0, False, x),
            "backward out=":
            lambda: aten.elu_backward.grad_input(g, *SELU, 1.0, False, x, grad_input=y)}


def _numpy_gelu(x, g, y, approximate="none"):
    return {"forward": lambda: 0.5 * x * (1 + sp.erf(x / SQRT2)),
            "backward":
            lambda: g * (0.5 * (1 + sp.erf(x / SQRT2)) + x * np.exp(-0.5 * x * x) * INV_SQRT_2PI)}


def _torch_gelu(torch, x, g, y, approximate="none"):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.gelu(x, approximate=approximate),
            "forward out=": lambda: nn.gelu(x, approximate=approximate, out=y),
            "backward": lambda: aten.gelu_backward(g, x, approximate=approximate),
            "backward out=":
            lambda: aten.gelu_backward.grad_input(g, x, approximate=approximate, grad_input=y)}


def _numpy_gelu_tanh(x, g, y, approximate="tanh"):
    return {"forward": lambda: 0.5 * x * (1 + np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x ** 3))),
            "backward": None}


def _torch_gelu_tanh(torch, x, g, y, approximate="tanh"):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.gelu(x, approximate=approximate),
            "forward out=": lambda: nn.gelu(x, approximate=approximate, out=y),
            "backward": lambda: aten.gelu_backward(g, x, approximate=approximate),
            "backward out=":
            lambda: aten.gelu_backward.grad_input(g, x, approximate=approximate, grad_input=y)}


def _numpy_silu(x, g, y):
    return {"forward": lambda: x / (1 + np.exp(-x)),
            "backward": lambda: g * sp.expit(x) * (1 + x * (1 - sp.expit(x)))}


def _torch_silu(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.silu(x),
            "forward out=": lambda: nn.silu(x, out=y),
            "backward": lambda: aten.silu_backward(g, x),
            "backward out=": lambda: aten.silu_backward.grad_input(g, x, grad_input=y)}


def _numpy_swish(x, g, y, beta=1.0):
    return {"forward": lambda: x / (1 + np.exp(-beta * x)),
            "backward": None}


def _numpy_sigmoid(x, g, y):
    return {"forward": lambda: sp.expit(x, out=y),
            "backward": None}


def _torch_sigmoid(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: torch.sigmoid(x),
            "forward out=": lambda: torch.sigmoid(x, out=y),
            "backward": lambda: aten.sigmoid_backward(g, x),
            "backward out=": lambda: aten.sigmoid_backward.grad_input(g, x, grad_input=y)}


def _numpy_tanh(x, g, y):
    return {"forward": lambda: np.tanh(x, out=y),
            "backward": None}


def _torch_tanh(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: torch.tanh(x),
            "forward out=": lambda: torch.tanh(x, out=y),
            "backward": lambda: aten.tanh_backward(g, x),
            "backward out=": lambda: aten.tanh_backward.grad_input(g, x, grad_input=y)}


def _numpy_softplus(x, g, y, beta=1.0, threshold=20.0):
    return {"forward": lambda: np.logaddexp(0, beta * x) / beta,
            "backward": None}


def _torch_softplus(torch, x, g, y, beta=1.0, threshold=20.0):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.softplus(x, beta, threshold),
            "forward out=": lambda: nn.softplus(x, beta, threshold, out=y),
            "backward": lambda: aten.softplus_backward(g, x, beta, threshold),
            "backward out=":
            lambda: aten.softplus_backward.grad_input(g, x, beta, threshold, grad_input=y)}


def _numpy_hardswish(x, g, y):
    return {"forward": lambda: x * np.clip(x + 3, 0, 6) / 6,
            "backward": lambda: np.where(x <= -3, 0, np.where(x >= 3, g, g * (x / 3 + 0.5)))}


def _torch_hardswish(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.hardswish(x),
            "forward out=": lambda: nn.hardswish(x, out=y),
            "backward": lambda: aten.hardswish_backward(g, x),
            "backward out=": lambda: aten.hardswish_backward.out(g, x, out=y)}


def _numpy_hardsigmoid(x, g, y):
    return {"forward": lambda: np.clip(x + 3, 0, 6) / 6,
            "backward": lambda: np.where((x > -3) & (x < 3), g / 6, 0)}


def _torch_hardsigmoid(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.hardsigmoid(x),
            "forward out=": lambda: nn.hardsigmoid(x, out=y),
            "backward": lambda: aten.hardsigmoid_backward(g, x),
            "backward out=": lambda: aten.hardsigmoid_backward.grad_input(g, x, grad_input=y)}


def _numpy_mish(x, g, y):
    return {"forward": lambda: x * np.tanh(np.logaddexp(0, x)),
            "backward": None}


def _torch_mish(torch, x, g, y):
    F, nn, aten = torch.nn.functional, torch._C._nn, torch.ops.aten
    return {"forward": lambda: F.mish(x),
            "forward out=": lambda: nn.mish(x, out=y),
            "backward": lambda: aten.mish_backward(g, x),
            "backward out=": None}


_NUMPY = {"relu": _numpy_relu, "leaky_relu": _numpy_leaky_relu, "elu": _numpy_elu,
          "selu": _numpy_selu, "gelu": _numpy_gelu, "gelu[tanh]": _numpy_gelu_tanh,
          "silu": _numpy_silu, "swish": _numpy_swish, "sigmoid": _numpy_sigmoid,
          "tanh": _numpy_tanh, "softplus": _numpy_softplus, "hardswish": _numpy_hardswish,
          "hardsigmoid": _numpy_hardsigmoid, "mish": _numpy_mish}
_TORCH = {"relu": _torch_relu, "leaky_relu": _torch_leaky_relu, "elu": _torch_elu,
          "selu": _torch_selu, "gelu": _torch_gelu, "gelu[tanh]": _torch_gelu_tanh,
          "silu": _torch_silu, "sigmoid": _torch_sigmoid, "tanh": _torch_tanh,
          "softplus": _torch_softplus, "hardswish": _torch_hardswish,
          "hardsigmoid": _torch_hardsigmoid, "mish": _torch_mish}


def torch_peers(row, torch, x, g, y, **params):
    """PyTorch's kernels for a row (tensors x, g, y), as _torch_<name> above; {} where torch
    has none (swish). bench --family calls uses them too."""
    make = _TORCH.get(row)
    return {} if make is None else make(torch, x, g, y, **params)


def _probed(fn):
    """fn, or None when this torch version spells the operator differently."""
    if fn is None:
        return None
    try:
        fn()
    except Exception:
        return None
    return fn


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


def _torch_impls(row, params, backward, x, g, y):
    """{"torch": ..., "torch (out=)": ...} for a row on the arrays x, g, y (empty without
    PyTorch). A backward without an out= operator (mish) is timed allocating only."""
    torch = torch_or_none()
    if torch is None:
        return {}
    tx, tg, ty = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(y)
    peers = torch_peers(row, torch, tx, tg, ty, **params)
    key = "backward" if backward else "forward"
    impls = {"torch": _probed(peers.get(key)), "torch (out=)": _probed(peers.get(key + " out="))}
    return {name: fn for name, fn in impls.items() if fn is not None}


def _float64_case(row, name, params, n, backward):
    """The float64 case: mlkernels and PyTorch (with out= where it has it) against a copy of
    the same bytes (1 copy for a forward, 1.5 for a backward: it reads two arrays and writes
    one)."""
    x, g, y = _bench_inputs(n, np.float64)
    f = getattr(fast, name + ("_backward" if backward else ""))
    impls = {"mlkernels": (lambda: f(g, x, **params, out=y)) if backward
             else (lambda: f(x, **params, out=y))}
    torch = _torch_impls(row, params, backward, x, g, y)
    if "torch (out=)" in torch:
        impls["torch (out=)"] = torch["torch (out=)"]
    elif "torch" in torch:
        impls["torch"] = torch["torch"]
    return BenchCase(f"float64 {n // 2**20}M", impls, dtype="float64", shape=(n,),
                     nbytes=(24.0 if backward else 16.0) * n,
                     copy_nbytes=8 * n, copy_factor=1.5 if backward else 1.0)


def _bench_forward(row, name, params):
    def bench(quick):
        n = (4 if quick else 16) * 2**20
        x, g, y = _bench_inputs(n, np.float32)
        f = getattr(fast, name)
        impls = {"mlkernels": lambda: f(x, **params, out=y),
                 "mlkernels (no out=)": lambda: f(x, **params)}
        numpy = _NUMPY[row](x, g, y, **params)["forward"]
        if numpy is not None:
            impls["numpy"] = numpy
        impls.update(_torch_impls(row, params, False, x, g, y))
        cases = [BenchCase(f"float32 {n // 2**20}M", impls, shape=(n,), nbytes=8.0 * n,
                           copy_nbytes=4 * n, copy_factor=1.0)]
        if row in ("gelu", "relu"):
            x8, y8 = x[:8].copy(), np.empty(8, np.float32)
            cases.append(BenchCase("float32 8 elements (per-call cost)", shape=(8,), impls={
                "mlkernels": lambda: f(x8, **params, out=y8),
                "numpy ufunc np.negative(out=)": lambda: np.negative(x8, out=y8)}))
        cases.append(_float64_case(row, name, params, n, backward=False))
        if row in storage16.ACTIVATION_ROWS:
            cases += storage16.activation_cases(row, name, params, False, quick)
        return cases
    return bench


def _bench_backward(row, name, params):
    def bench(quick):
        n = (4 if quick else 16) * 2**20
        x, g, y = _bench_inputs(n, np.float32)
        fb = getattr(fast, name + "_backward")
        impls = {"mlkernels": lambda: fb(g, x, **params, out=y)}
        numpy = _NUMPY[row](x, g, y, **params)["backward"]
        if numpy is not None:
            impls["numpy"] = numpy
        impls.update(_torch_impls(row, params, True, x, g, y))
        cases = [BenchCase(f"float32 {n // 2**20}M", impls, shape=(n,), nbytes=12.0 * n,
                           copy_nbytes=4 * n, copy_factor=1.5),
                 _float64_case(row, name, params, n, backward=True)]
        if row in storage16.ACTIVATION_ROWS:
            cases += storage16.activation_cases(row, name, params, True, quick)
        return cases
    return bench


SPECS = []
for _row, _name, _params, _kinks in ACTIVATIONS:
    SPECS.append(_forward_row(_row, _name, _params))
    SPECS[-1] = KernelSpec(**{**SPECS[-1].__dict__, "bench": _bench_forward(_row, _name, _params)})
    SPECS.append(_backward_row(_row, _name, _params, _kinks))
    SPECS[-1] = KernelSpec(**{**SPECS[-1].__dict__,
                              "bench": _bench_backward(_row, _name, _params)})
SPECS += [
    KernelSpec("prelu", "activations", fast.prelu, ref.prelu, _prelu_args, PRELU_SHAPES),
    KernelSpec("prelu_backward", "activations", fast.prelu_backward, ref.prelu_backward,
               _prelu_backward_args, PRELU_SHAPES, gradcheck=_prelu_check, backward_of="prelu",
               scale=lambda a, k: [None, np.abs(a[0].astype(np.float64)
                                                * a[1].astype(np.float64)).sum()]),
]
