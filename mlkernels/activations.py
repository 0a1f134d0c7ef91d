"""Activations and their derivatives, as in ``torch.nn.functional``.

Every activation ``f`` has ``f(x, ..., *, out=None)`` and ``f_backward(grad_out, x, ...,
*, out=None)``, which returns ``grad_out · f'(x)`` (it takes the forward's *input*).
float32 and float64, any shape; ``out`` may be the input itself (in place).
Kernels: ``mlkernels/_activations.pyx`` on the vectorized math of ``_vecmath.h``.
"""
from __future__ import annotations

from math import prod
from typing import Optional, Tuple

import numpy as np

from . import _validate as V
from ._dispatch import K

__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
           "selu", "selu_backward", "gelu", "gelu_backward", "silu", "silu_backward", "swish",
           "swish_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "softplus",
           "softplus_backward", "prelu", "prelu_backward"]

# operation codes of _activations.pyx (its ``Op`` enum)
RELU, LEAKY_RELU, ELU, SELU, GELU, GELU_TANH, SILU, SWISH, SIGMOID, TANH, SOFTPLUS = range(11)
_GELU = {"none": GELU, "tanh": GELU_TANH}


def _forward(where: str, op: int, x, out, a: float = 0.0, b: float = 0.0) -> np.ndarray:
    y = K._activations.unary(op, x, out, a, b)       # fast path: plain arrays
    if y is NotImplemented:                          # anything else: validate, copy once
        dtype = V.float_dtype(where, x=x)
        y = V.output(where, out, x.shape, dtype, inputs=(x,), inplace_ok=(x,))
        y = K._activations.unary(op, V.c_array(x, dtype), y, a, b)
    return y


def _backward(where: str, op: int, grad_out, x, out, a: float = 0.0,
              b: float = 0.0) -> np.ndarray:
    y = K._activations.binary(op, grad_out, x, out, a, b)
    if y is NotImplemented:
        dtype = V.float_dtype(where, grad_out=grad_out, x=x)
        V.shape_is(where, "grad_out", grad_out, x.shape, "the shape of x")
        y = V.output(where, out, x.shape, dtype, inputs=(grad_out, x),
                     inplace_ok=(grad_out, x))
        y = K._activations.binary(op, V.c_array(grad_out, dtype), V.c_array(x, dtype), y, a, b)
    return y


def relu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """max(x, 0); NaN stays NaN."""
    return _forward("relu()", RELU, x, out)


def relu_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out where x > 0, else 0 (the derivative at the kink x = 0 is 0)."""
    return _backward("relu_backward()", RELU, grad_out, x, out)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01, *,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """x if x > 0 else negative_slope·x."""
    s = V.number("leaky_relu()", "negative_slope", negative_slope)
    return _forward("leaky_relu()", LEAKY_RELU, x, out, s)


def leaky_relu_backward(grad_out: np.ndarray, x: np.ndarray, negative_slope: float = 0.01, *,
                        out: Optional[np.ndarray] = None) -> np.ndarray:
    s = V.number("leaky_relu_backward()", "negative_slope", negative_slope)
    return _backward("leaky_relu_backward()", LEAKY_RELU, grad_out, x, out, s)


def elu(x: np.ndarray, alpha: float = 1.0, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """x if x > 0 else alpha·(eˣ − 1)."""
    return _forward("elu()", ELU, x, out, V.number("elu()", "alpha", alpha))


def elu_backward(grad_out: np.ndarray, x: np.ndarray, alpha: float = 1.0, *,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out if x > 0 else grad_out·alpha·eˣ."""
    return _backward("elu_backward()", ELU, grad_out, x, out,
                     V.number("elu_backward()", "alpha", alpha))


def selu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """λ·(x if x > 0 else α(eˣ − 1)), α ≈ 1.6732632423543772, λ ≈ 1.0507009873554805."""
    return _forward("selu()", SELU, x, out)


def selu_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    return _backward("selu_backward()", SELU, grad_out, x, out)


def gelu(x: np.ndarray, approximate: str = "none", *,
         out: Optional[np.ndarray] = None) -> np.ndarray:
    """x·Φ(x) (``approximate="none"``), or 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))
    (``"tanh"``). Relative accuracy holds in the left tail (gelu(-10) ≈ -7.6e-23)."""
    op = _GELU.get(approximate) if isinstance(approximate, str) else None
    if op is None:
        V.choice("gelu()", "approximate", approximate, tuple(_GELU))
    return _forward("gelu()", op, x, out)


def gelu_backward(grad_out: np.ndarray, x: np.ndarray, approximate: str = "none", *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out·(Φ(x) + x·φ(x)), or the derivative of the tanh form."""
    op = _GELU.get(approximate) if isinstance(approximate, str) else None
    if op is None:
        V.choice("gelu_backward()", "approximate", approximate, tuple(_GELU))
    return _backward("gelu_backward()", op, grad_out, x, out)


def silu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """x·σ(x) (also called swish with beta = 1)."""
    return _forward("silu()", SILU, x, out)


def silu_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out·σ(x)(1 + x(1 − σ(x)))."""
    return _backward("silu_backward()", SILU, grad_out, x, out)


def swish(x: np.ndarray, beta: float = 1.0, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """x·σ(beta·x)."""
    return _forward("swish()", SWISH, x, out, V.number("swish()", "beta", beta))


def swish_backward(grad_out: np.ndarray, x: np.ndarray, beta: float = 1.0, *,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out·σ(βx)(1 + βx(1 − σ(βx))) (the gradient with respect to x only)."""
    return _backward("swish_backward()", SWISH, grad_out, x, out,
                     V.number("swish_backward()", "beta", beta))


def sigmoid(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """1 / (1 + e⁻ˣ), computed without overflow and with relative accuracy in the left tail."""
    return _forward("sigmoid()", SIGMOID, x, out)


def sigmoid_backward(grad_out: np.ndarray, x: np.ndarray, *,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out·σ(x)(1 − σ(x))."""
    return _backward("sigmoid_backward()", SIGMOID, grad_out, x, out)


def tanh(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """tanh(x)."""
    return _forward("tanh()", TANH, x, out)


def tanh_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out·(1 − tanh²(x))."""
    return _backward("tanh_backward()", TANH, grad_out, x, out)


def _softplus_args(where: str, beta, threshold) -> Tuple[float, float]:
    return (V.number(where, "beta", beta, low=0.0, low_open=True),
            V.number(where, "threshold", threshold))


def softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0, *,
             out: Optional[np.ndarray] = None) -> np.ndarray:
    """log(1 + e^(beta·x))/beta, or x where beta·x > threshold (as torch)."""
    b, t = _softplus_args("softplus()", beta, threshold)
    return _forward("softplus()", SOFTPLUS, x, out, b, t)


def softplus_backward(grad_out: np.ndarray, x: np.ndarray, beta: float = 1.0,
                      threshold: float = 20.0, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_out·σ(beta·x), or grad_out where beta·x > threshold."""
    b, t = _softplus_args("softplus_backward()", beta, threshold)
    return _backward("softplus_backward()", SOFTPLUS, grad_out, x, out, b, t)


# ------------------------------------------------------------------ PReLU

def _prelu_layout(where: str, x: np.ndarray, weight: np.ndarray) -> Tuple[int, int, int]:
    """x as (N, C, S): channels on axis 1 (one channel when x.ndim < 2), as torch."""
    if weight.ndim != 1:
        raise ValueError(f"{where}: weight has shape {weight.shape}; expected 1-d, (1,) or "
                         f"(channels,)")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if weight.shape[0] not in (1, channels):
        raise ValueError(f"{where}: weight has {weight.shape[0]} elements but x has "
                         f"{channels} channels (axis 1 of shape {x.shape}); expected 1 or "
                         f"{channels}")
    if x.ndim >= 2:
        return x.shape[0], channels, prod(x.shape[2:])
    return 1, 1, x.size


def prelu(x: np.ndarray, weight: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """x if x > 0 else weight[c]·x, with c the channel (axis 1) -- a learned leaky ReLU."""
    where = "prelu()"
    dtype = V.float_dtype(where, x=x, weight=weight)
    layout = _prelu_layout(where, x, weight)
    y = V.output(where, out, x.shape, dtype, inputs=(x, weight), inplace_ok=(x,))
    K._activations.prelu_forward(V.c_array(x, dtype), V.c_array(weight, dtype), y, *layout)
    return y


def prelu_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, *,
                   out: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray]]] = None
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """(grad_x, grad_weight): grad_out where x > 0 else weight·grad_out, and
    grad_weight[c] = Σ over x ≤ 0 of grad_out·x in channel c (summed in double)."""
    where = "prelu_backward()"
    dtype = V.float_dtype(where, grad_out=grad_out, x=x, weight=weight)
    layout = _prelu_layout(where, x, weight)
    V.shape_is(where, "grad_out", grad_out, x.shape, "the shape of x")
    out = (None, None) if out is None else out
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{where}: out must be a tuple (grad_x, grad_weight), got "
                        f"{type(out).__name__}")
    gx = V.output(where, out[0], x.shape, dtype, (x, weight), "out[0] (grad_x)",
                  inplace_ok=(grad_out,))
    gw = V.output(where, out[1], weight.shape, dtype, (grad_out, x, weight, gx),
                  "out[1] (grad_weight)")
    K._activations.prelu_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                                  V.c_array(weight, dtype), gx, gw, *layout)
    return gx, gw
