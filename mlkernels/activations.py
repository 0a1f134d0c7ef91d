# Generated from mlkernels/_activation_table.py by mlkernels/_generate.py
# (template: mlkernels/activations.py.tp); do not edit.
"""Activations and their derivatives, as in ``torch.nn.functional``.

Every activation ``f`` has ``f(x, ..., *, out=None)`` and ``f_backward(grad_out, x, ...,
*, out=None)``, which returns ``grad_out · f'(x)`` (it takes the forward's *input*).
float32 and float64, any shape; ``out`` may be the input itself (in place). 16-bit storage,
``ml_dtypes.bfloat16`` and ``numpy.float16``: computed in float32, each result the float32
kernel's on the widened inputs, rounded once to nearest even (``_half`` below).

Reading guide: each function checks its parameters and calls the entry of the same name in
``mlkernels/_activations.pyx`` (gelu with ``approximate="tanh"``: ``gelu_tanh``), which calls
the kernel of the same name in ``mlkernels/_act.pxd``, whose loop sits under its math. When
the arrays are not plain (another dtype, strides, a wrong ``out``...) the entry returns
NotImplemented and ``_checked`` checks everything and copies x into shape. The functions, the
entries and the kernels are generated from ``mlkernels/_activation_table.py``; PReLU, which
learns a slope per channel, is written in the template.
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
           "softplus_backward", "hardswish", "hardswish_backward", "hardsigmoid",
           "hardsigmoid_backward", "mish", "mish_backward", "prelu", "prelu_backward"]

# The operation codes of _act.pxd's Op enum (the fused linear takes them)
RELU = 0
LEAKY_RELU = 1
ELU = 2
SELU = 3
GELU = 4
GELU_TANH = 5
SILU = 6
SWISH = 7
SIGMOID = 8
TANH = 9
SOFTPLUS = 10
HARDSWISH = 11
HARDSIGMOID = 12
MISH = 13

#: The activations the fused linear takes (``linear(..., activation=name)``): name ->
#: (operation code, the public function, its keyword arguments for this kernel)
FUSED_WITH_LINEAR = {
    "relu": (RELU, "relu", {}),
    "gelu": (GELU, "gelu", {"approximate": "none"}),
    "gelu_tanh": (GELU_TANH, "gelu", {"approximate": "tanh"}),
    "silu": (SILU, "silu", {}),
    "sigmoid": (SIGMOID, "sigmoid", {}),
    "tanh": (TANH, "tanh", {}),
    "hardswish": (HARDSWISH, "hardswish", {}),
    "hardsigmoid": (HARDSIGMOID, "hardsigmoid", {}),
    "mish": (MISH, "mish", {}),
}


def _checked(where: str, x, out) -> Tuple[np.ndarray, np.ndarray]:
    """(x, out) after every check (TypeError/ValueError naming the problem, before anything is
    written): x as a C-contiguous array of its float dtype (a copy if needed) and the output
    array (out, or a new one)."""
    dtype = V.storage_dtype(where, x=x)
    y = V.output(where, out, x.shape, dtype, inputs=(x,), inplace_ok=(x,))
    return V.c_array(x, dtype), y


def _checked_backward(where: str, grad_out, x, out) -> Tuple[np.ndarray, np.ndarray,
                                                            np.ndarray]:
    """(grad_out, x, out) after every check, as _checked."""
    dtype = V.storage_dtype(where, grad_out=grad_out, x=x)
    V.shape_is(where, "grad_out", grad_out, x.shape, "the shape of x")
    y = V.output(where, out, x.shape, dtype, inputs=(grad_out, x), inplace_ok=(grad_out, x))
    return V.c_array(grad_out, dtype), V.c_array(x, dtype), y


def _half(op: int, grad_out, x: np.ndarray, y: np.ndarray, *params: float) -> np.ndarray:
    """Operation op (the codes above) on 16-bit storage, arrays checked by _checked*: the
    float32 kernel on blocks widened in cache, each result rounded once (_activations.half)."""
    K._activations.half(op, V.storage_kind(y.dtype), grad_out, x, y, *params)
    return y


def relu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Rectified linear unit: max(x, 0).

    y = max(x, 0); NaN and -0 pass through, as ``torch.nn.functional.relu``. bfloat16
    (ml_dtypes) and float16 arrays are computed in float32: the result is the float32
    kernel's on the widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    relu_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.relu(np.array([-2.0, 0.0, 1.5]))
    array([0. , 0. , 1.5])
    """
    entry = K._activations.relu
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("relu()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(RELU, None, x, out)
    return y


def relu_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``relu`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0; NaN where x is
    NaN). It takes the forward's input x (not its output), as this package's backwards all
    do. bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    relu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.relu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]))
    array([0., 0., 1.])
    """
    entry = K._activations.relu_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("relu_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(RELU, grad_out, x, out)
    return y


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01, *,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Leaky ReLU: x where x > 0, negative_slope·x elsewhere.

    y = x if x > 0 else negative_slope·x, as ``torch.nn.functional.leaky_relu``. bfloat16
    (ml_dtypes) and float16 arrays are computed in float32: the result is the float32
    kernel's on the widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    negative_slope : float, default 0.01
        The slope for x ≤ 0.
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, out is not an ndarray,
        or negative_slope is not a real number.
    ValueError
        negative_slope is not finite; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    leaky_relu_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.leaky_relu(np.array([-2.0, 0.0, 1.5]), negative_slope=0.1)
    array([-0.2,  0. ,  1.5])
    """
    negative_slope = V.number("leaky_relu()", "negative_slope", negative_slope)
    entry = K._activations.leaky_relu
    y = entry(x, out, negative_slope)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("leaky_relu()", x, out)
        y = entry(x, out, negative_slope) if out.itemsize > 2 else \
            _half(LEAKY_RELU, None, x, out, negative_slope)
    return y


def leaky_relu_backward(grad_out: np.ndarray, x: np.ndarray, negative_slope: float = 0.01, *,
                        out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``leaky_relu`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = 1 if x > 0 else negative_slope. It takes the forward's
    input x (not its output), as this package's backwards all do. bfloat16 (ml_dtypes) and
    float16 arrays are computed in float32: the result is the float32 kernel's on the
    widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    negative_slope : float, default 0.01
        The slope for x ≤ 0.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, out is not an ndarray, or negative_slope is not a real
        number.
    ValueError
        grad_out's shape is not x's; negative_slope is not finite; out has another shape or
        dtype, is read-only or not C-contiguous, or overlaps an input without being it.
        Nothing is written when it raises.

    See Also
    --------
    leaky_relu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.leaky_relu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]), 0.1)
    array([0.1, 0.1, 1. ])
    """
    negative_slope = V.number("leaky_relu_backward()", "negative_slope", negative_slope)
    entry = K._activations.leaky_relu_backward
    y = entry(grad_out, x, out, negative_slope)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("leaky_relu_backward()", grad_out, x, out)
        y = entry(grad_out, x, out, negative_slope) if out.itemsize > 2 else \
            _half(LEAKY_RELU, grad_out, x, out, negative_slope)
    return y


def elu(x: np.ndarray, alpha: float = 1.0, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Exponential linear unit: x where x > 0, alpha·(eˣ − 1) elsewhere.

    y = x if x > 0 else alpha·(e^x − 1), as ``torch.nn.functional.elu``. bfloat16
    (ml_dtypes) and float16 arrays are computed in float32: the result is the float32
    kernel's on the widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    alpha : float, default 1.0
        The value y approaches as x → −∞ is −alpha.
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, out is not an ndarray,
        or alpha is not a real number.
    ValueError
        alpha is not finite; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    elu_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.elu(np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.8647,  0.    ,  1.5   ])
    """
    alpha = V.number("elu()", "alpha", alpha)
    entry = K._activations.elu
    y = entry(x, out, alpha)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("elu()", x, out)
        y = entry(x, out, alpha) if out.itemsize > 2 else \
            _half(ELU, None, x, out, alpha)
    return y


def elu_backward(grad_out: np.ndarray, x: np.ndarray, alpha: float = 1.0, *,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``elu`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = 1 if x > 0 else alpha·e^x. It takes the forward's input
    x (not its output), as this package's backwards all do. bfloat16 (ml_dtypes) and float16
    arrays are computed in float32: the result is the float32 kernel's on the widened input
    and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    alpha : float, default 1.0
        The value y approaches as x → −∞ is −alpha.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, out is not an ndarray, or alpha is not a real number.
    ValueError
        grad_out's shape is not x's; alpha is not finite; out has another shape or dtype, is
        read-only or not C-contiguous, or overlaps an input without being it. Nothing is
        written when it raises.

    See Also
    --------
    elu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.elu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.1353, 1.    , 1.    ])
    """
    alpha = V.number("elu_backward()", "alpha", alpha)
    entry = K._activations.elu_backward
    y = entry(grad_out, x, out, alpha)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("elu_backward()", grad_out, x, out)
        y = entry(grad_out, x, out, alpha) if out.itemsize > 2 else \
            _half(ELU, grad_out, x, out, alpha)
    return y


def selu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Scaled ELU: λ·(x where x > 0, α·(eˣ − 1) elsewhere), self-normalizing.

    y = λ·(x if x > 0 else α·(e^x − 1)), α = 1.6732632423543772, λ = 1.0507009873554805, as
    ``torch.nn.functional.selu``. bfloat16 (ml_dtypes) and float16 arrays are computed in
    float32: the result is the float32 kernel's on the widened input, rounded once to
    nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    selu_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.selu(np.array([-2.0, 0.0, 1.5])).round(4)
    array([-1.5202,  0.    ,  1.5761])
    """
    entry = K._activations.selu
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("selu()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(SELU, None, x, out)
    return y


def selu_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``selu`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = λ if x > 0 else λ·α·e^x. It takes the forward's input x
    (not its output), as this package's backwards all do. bfloat16 (ml_dtypes) and float16
    arrays are computed in float32: the result is the float32 kernel's on the widened input
    and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    selu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.selu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.2379, 1.7581, 1.0507])
    """
    entry = K._activations.selu_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("selu_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(SELU, grad_out, x, out)
    return y


def gelu(x: np.ndarray, approximate: str = "none", *,
         out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gaussian error linear unit: x·Φ(x), or its tanh approximation.

    y = x·Φ(x), Φ the standard normal CDF, as ``torch.nn.functional.gelu``. With
    ``approximate="tanh"``: y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). Both keep their
    relative accuracy in the left tail (gelu(−10) ≈ −7.6e-23). bfloat16 (ml_dtypes) and
    float16 arrays are computed in float32: the result is the float32 kernel's on the
    widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    approximate : {"none", "tanh"}, default "none"
        The exact form, or the tanh approximation.
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        approximate is not one of "none", "tanh"; out has another shape or dtype, is read-
        only or not C-contiguous, or overlaps an input without being it. Nothing is written
        when it raises.

    See Also
    --------
    gelu_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.gelu(np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.0455,  0.    ,  1.3998])
    >>> mk.gelu(np.array([-2.0, 0.0, 1.5]), approximate="tanh").round(4)
    array([-0.0454,  0.    ,  1.3996])
    """
    if type(approximate) is not str:
        V.choice("gelu()", "approximate", approximate, ("none", "tanh"))
    if approximate == "none":
        entry = K._activations.gelu
    elif approximate == "tanh":
        entry = K._activations.gelu_tanh
    else:                            # not one of the choices: raises
        V.choice("gelu()", "approximate", approximate, ("none", "tanh"))
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("gelu()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(GELU if approximate == "none" else GELU_TANH, None, x, out)
    return y


def gelu_backward(grad_out: np.ndarray, x: np.ndarray, approximate: str = "none", *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``gelu`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = Φ(x) + x·φ(x), φ the standard normal density. With
    approximate="tanh": f'(x) = σ(2u) + 2x·σ'(2u)·u', u' = √(2/π)·(1 + 3·0.044715·x²). It
    takes the forward's input x (not its output), as this package's backwards all do.
    bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    approximate : {"none", "tanh"}, default "none"
        The exact form, or the tanh approximation.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; approximate is not one of "none", "tanh"; out has
        another shape or dtype, is read-only or not C-contiguous, or overlaps an input
        without being it. Nothing is written when it raises.

    See Also
    --------
    gelu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.gelu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.0852,  0.5   ,  1.1275])
    """
    if type(approximate) is not str:
        V.choice("gelu_backward()", "approximate", approximate, ("none", "tanh"))
    if approximate == "none":
        entry = K._activations.gelu_backward
    elif approximate == "tanh":
        entry = K._activations.gelu_tanh_backward
    else:                            # not one of the choices: raises
        V.choice("gelu_backward()", "approximate", approximate, ("none", "tanh"))
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("gelu_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(GELU if approximate == "none" else GELU_TANH, grad_out, x, out)
    return y


def silu(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Sigmoid linear unit: x·σ(x) (swish with beta = 1).

    y = x·σ(x), as ``torch.nn.functional.silu``. bfloat16 (ml_dtypes) and float16 arrays are
    computed in float32: the result is the float32 kernel's on the widened input, rounded
    once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    silu_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.silu(np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.2384,  0.    ,  1.2264])
    """
    entry = K._activations.silu
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("silu()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(SILU, None, x, out)
    return y


def silu_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``silu`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = σ(x) + x·σ'(x) = σ(x)·(1 + x·(1 − σ(x))). It takes the
    forward's input x (not its output), as this package's backwards all do. bfloat16
    (ml_dtypes) and float16 arrays are computed in float32: the result is the float32
    kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    silu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.silu_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.0908,  0.5   ,  1.0413])
    """
    entry = K._activations.silu_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("silu_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(SILU, grad_out, x, out)
    return y


def swish(x: np.ndarray, beta: float = 1.0, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Swish: x·σ(beta·x).

    y = x·σ(beta·x). ``silu`` is swish with beta = 1. PyTorch has no swish with a beta.
    bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    beta : float, default 1.0
        The slope inside the sigmoid.
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, out is not an ndarray,
        or beta is not a real number.
    ValueError
        beta is not finite; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    swish_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.swish(np.array([-2.0, 0.0, 1.5]), beta=2.0).round(4)
    array([-0.036 ,  0.    ,  1.4289])
    """
    beta = V.number("swish()", "beta", beta)
    entry = K._activations.swish
    y = entry(x, out, beta)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("swish()", x, out)
        y = entry(x, out, beta) if out.itemsize > 2 else \
            _half(SWISH, None, x, out, beta)
    return y


def swish_backward(grad_out: np.ndarray, x: np.ndarray, beta: float = 1.0, *,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``swish`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = σ(βx) + βx·σ'(βx) (the gradient with respect to x
    only). It takes the forward's input x (not its output), as this package's backwards all
    do. bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    beta : float, default 1.0
        The slope inside the sigmoid.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, out is not an ndarray, or beta is not a real number.
    ValueError
        grad_out's shape is not x's; beta is not finite; out has another shape or dtype, is
        read-only or not C-contiguous, or overlaps an input without being it. Nothing is
        written when it raises.

    See Also
    --------
    swish : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.swish_backward(np.ones(3), np.array([-2.0, 0.0, 1.5]), beta=2.0).round(4)
    array([-0.0527,  0.5   ,  1.0881])
    """
    beta = V.number("swish_backward()", "beta", beta)
    entry = K._activations.swish_backward
    y = entry(grad_out, x, out, beta)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("swish_backward()", grad_out, x, out)
        y = entry(grad_out, x, out, beta) if out.itemsize > 2 else \
            _half(SWISH, grad_out, x, out, beta)
    return y


def sigmoid(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The logistic sigmoid: 1 / (1 + e⁻ˣ).

    y = σ(x) = 1/(1 + e^−x), as ``torch.nn.functional.sigmoid``. Computed through e^−|x|: it
    never overflows, and the left tail keeps its relative accuracy. bfloat16 (ml_dtypes) and
    float16 arrays are computed in float32: the result is the float32 kernel's on the
    widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    sigmoid_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.sigmoid(np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.1192, 0.5   , 0.8176])
    """
    entry = K._activations.sigmoid
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("sigmoid()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(SIGMOID, None, x, out)
    return y


def sigmoid_backward(grad_out: np.ndarray, x: np.ndarray, *,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``sigmoid`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = σ'(x) = σ(x)·(1 − σ(x)). It takes the forward's input x
    (not its output), as this package's backwards all do. bfloat16 (ml_dtypes) and float16
    arrays are computed in float32: the result is the float32 kernel's on the widened input
    and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    sigmoid : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.sigmoid_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.105 , 0.25  , 0.1491])
    """
    entry = K._activations.sigmoid_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("sigmoid_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(SIGMOID, grad_out, x, out)
    return y


def tanh(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The hyperbolic tangent.

    y = tanh(x), as ``torch.nn.functional.tanh``. bfloat16 (ml_dtypes) and float16 arrays
    are computed in float32: the result is the float32 kernel's on the widened input,
    rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    tanh_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.tanh(np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.964 ,  0.    ,  0.9051])
    """
    entry = K._activations.tanh
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("tanh()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(TANH, None, x, out)
    return y


def tanh_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``tanh`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = 1 − tanh²(x). It takes the forward's input x (not its
    output), as this package's backwards all do. bfloat16 (ml_dtypes) and float16 arrays are
    computed in float32: the result is the float32 kernel's on the widened input and
    grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    tanh : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.tanh_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.0707, 1.    , 0.1807])
    """
    entry = K._activations.tanh_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("tanh_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(TANH, grad_out, x, out)
    return y


def softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0, *,
             out: Optional[np.ndarray] = None) -> np.ndarray:
    """Softplus: log(1 + e^(beta·x))/beta, a smooth ReLU.

    y = log(1 + e^(beta·x))/beta, or x where beta·x > threshold, as
    ``torch.nn.functional.softplus``. Above the threshold the function reverts to the
    identity, as torch's does. bfloat16 (ml_dtypes) and float16 arrays are computed in
    float32: the result is the float32 kernel's on the widened input, rounded once to
    nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    beta : float, default 1.0
        The sharpness: larger beta is closer to relu.
    threshold : float, default 20.0
        Where beta·x is larger, y is x.
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, out is not an ndarray,
        beta is not a real number, or threshold is not a real number.
    ValueError
        beta is not finite or not in (0.0, inf); threshold is not finite; out has another
        shape or dtype, is read-only or not C-contiguous, or overlaps an input without being
        it. Nothing is written when it raises.

    See Also
    --------
    softplus_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.softplus(np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.1269, 0.6931, 1.7014])
    """
    beta = V.number("softplus()", "beta", beta, low=0.0, low_open=True)
    threshold = V.number("softplus()", "threshold", threshold)
    entry = K._activations.softplus
    y = entry(x, out, beta, threshold)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("softplus()", x, out)
        y = entry(x, out, beta, threshold) if out.itemsize > 2 else \
            _half(SOFTPLUS, None, x, out, beta, threshold)
    return y


def softplus_backward(grad_out: np.ndarray, x: np.ndarray, beta: float = 1.0,
                      threshold: float = 20.0, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``softplus`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = σ(beta·x), or 1 where beta·x > threshold. It takes the
    forward's input x (not its output), as this package's backwards all do. bfloat16
    (ml_dtypes) and float16 arrays are computed in float32: the result is the float32
    kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    beta : float, default 1.0
        The sharpness: larger beta is closer to relu.
    threshold : float, default 20.0
        Where beta·x is larger, y is x.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, out is not an ndarray, beta is not a real number, or
        threshold is not a real number.
    ValueError
        grad_out's shape is not x's; beta is not finite or not in (0.0, inf); threshold is
        not finite; out has another shape or dtype, is read-only or not C-contiguous, or
        overlaps an input without being it. Nothing is written when it raises.

    See Also
    --------
    softplus : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.softplus_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([0.1192, 0.5   , 0.8176])
    """
    beta = V.number("softplus_backward()", "beta", beta, low=0.0, low_open=True)
    threshold = V.number("softplus_backward()", "threshold", threshold)
    entry = K._activations.softplus_backward
    y = entry(grad_out, x, out, beta, threshold)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("softplus_backward()", grad_out, x, out)
        y = entry(grad_out, x, out, beta, threshold) if out.itemsize > 2 else \
            _half(SOFTPLUS, grad_out, x, out, beta, threshold)
    return y


def hardswish(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Hard swish: x·relu6(x + 3)/6, a piecewise-quadratic swish (MobileNetV3).

    y = x·min(max(x + 3, 0), 6)/6, as ``torch.nn.functional.hardswish``. The derivative at
    the kinks is torch's: 0 at x = −3, 1 at x = 3. NaN passes through both directions
    (torch's backward returns grad_out for a NaN x in its scalar tail loop). bfloat16
    (ml_dtypes) and float16 arrays are computed in float32: the result is the float32
    kernel's on the widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    hardswish_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.hardswish(np.array([-4.0, -1.0, 0.0, 1.5, 3.0])).round(4)
    array([-0.    , -0.3333,  0.    ,  1.125 ,  3.    ])
    """
    entry = K._activations.hardswish
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("hardswish()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(HARDSWISH, None, x, out)
    return y


def hardswish_backward(grad_out: np.ndarray, x: np.ndarray, *,
                       out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``hardswish`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3. It
    takes the forward's input x (not its output), as this package's backwards all do.
    bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    hardswish : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.hardswish_backward(np.ones(5), np.array([-3.0, -1.0, 0.0, 1.5, 3.0])).round(4)
    array([0.    , 0.1667, 0.5   , 1.    , 1.    ])
    """
    entry = K._activations.hardswish_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("hardswish_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(HARDSWISH, grad_out, x, out)
    return y


def hardsigmoid(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Hard sigmoid: relu6(x + 3)/6, a piecewise-linear sigmoid (MobileNetV3).

    y = min(max(x + 3, 0), 6)/6, as ``torch.nn.functional.hardsigmoid``. NaN passes through
    both directions (torch's backward returns 0 for a NaN x). torch's float64 backward
    multiplies by 1/6 rounded to float32; this one uses the double 1/6. bfloat16 (ml_dtypes)
    and float16 arrays are computed in float32: the result is the float32 kernel's on the
    widened input, rounded once to nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    hardsigmoid_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.hardsigmoid(np.array([-4.0, -1.0, 0.0, 1.5, 3.0])).round(4)
    array([0.    , 0.3333, 0.5   , 0.75  , 1.    ])
    """
    entry = K._activations.hardsigmoid
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("hardsigmoid()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(HARDSIGMOID, None, x, out)
    return y


def hardsigmoid_backward(grad_out: np.ndarray, x: np.ndarray, *,
                         out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``hardsigmoid`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = 1/6 for −3 < x < 3, else 0 (0 at the kinks, as torch).
    It takes the forward's input x (not its output), as this package's backwards all do.
    bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    hardsigmoid : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.hardsigmoid_backward(np.ones(5), np.array([-3.0, -1.0, 0.0, 1.5, 3.0])).round(4)
    array([0.    , 0.1667, 0.1667, 0.1667, 0.    ])
    """
    entry = K._activations.hardsigmoid_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("hardsigmoid_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(HARDSIGMOID, grad_out, x, out)
    return y


def mish(x: np.ndarray, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Mish: x·tanh(softplus(x)), a smooth self-gated activation (YOLOv4).

    y = x·tanh(log(1 + e^x)), as ``torch.nn.functional.mish``. Computed from z = e^−|x|
    alone: with n = e^x, tanh(log(1 + n)) = n(n + 2)/(n(n + 2) + 2), written over z for
    either sign of x, never overflows and needs one exponential and one division (torch: an
    exponential, a log1p and a tanh). bfloat16 (ml_dtypes) and float16 arrays are computed
    in float32: the result is the float32 kernel's on the widened input, rounded once to
    nearest even.

    Parameters
    ----------
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        Any shape; any strides (a non-contiguous x is copied once).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x is not an ndarray of float32, float64, bfloat16 or float16, or out is not an
        ndarray.
    ValueError
        out has another shape or dtype, is read-only or not C-contiguous, or overlaps an
        input without being it. Nothing is written when it raises.

    See Also
    --------
    mish_backward : its gradient.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.mish(np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.2525,  0.    ,  1.4034])
    """
    entry = K._activations.mish
    y = entry(x, out)
    if y is NotImplemented:          # not plain arrays: check everything, copy x into shape
        x, out = _checked("mish()", x, out)
        y = entry(x, out) if out.itemsize > 2 else \
            _half(MISH, None, x, out)
    return y


def mish_backward(grad_out: np.ndarray, x: np.ndarray, *,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``mish`` with respect to its input x.

    grad_x = grad_out·f'(x), f'(x) = tanh(sp) + x·σ(x)·(1 − tanh²(sp)), sp = softplus(x). It
    takes the forward's input x (not its output), as this package's backwards all do.
    bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is the
    float32 kernel's on the widened input and grad_out, rounded once to nearest even.

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and dtype.
    x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16
        The forward's input; any shape and strides.
    out : ndarray, optional
        Where to write grad_x: C-contiguous, of x's shape and dtype; may be grad_out
        or x itself (in place).

    Returns
    -------
    grad_x : ndarray
        The gradient with respect to x, of x's shape and dtype (``out`` when given):
        written, never accumulated into.

    Raises
    ------
    TypeError
        grad_out or x is not an ndarray of float32, float64, bfloat16 or float16, grad_out
        and x have different dtypes, or out is not an ndarray.
    ValueError
        grad_out's shape is not x's; out has another shape or dtype, is read-only or not
        C-contiguous, or overlaps an input without being it. Nothing is written when it
        raises.

    See Also
    --------
    mish : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.mish_backward(np.ones(3), np.array([-2.0, 0.0, 1.5])).round(4)
    array([-0.1084,  0.6   ,  1.0885])
    """
    entry = K._activations.mish_backward
    y = entry(grad_out, x, out)
    if y is NotImplemented:
        grad_out, x, out = _checked_backward("mish_backward()", grad_out, x, out)
        y = entry(grad_out, x, out) if out.itemsize > 2 else \
            _half(MISH, grad_out, x, out)
    return y


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
    """Parametric ReLU: x where x > 0, weight[c]·x elsewhere, a leaky ReLU that learns its slope.

    y = x if x > 0 else weight[c]·x, with c the channel (axis 1 of x; one channel when
    x.ndim < 2), as ``torch.nn.functional.prelu``.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Any shape; any strides (a non-contiguous x is copied once). Or 16-bit storage
        (bfloat16 of ml_dtypes, float16; weight of the same dtype): the float32 result on
        widened copies, rounded once.
    weight : ndarray of shape (1,) or (channels,)
        The slopes: one for every channel, or one per channel (axis 1 of x).
    out : ndarray, optional
        Where to write y: C-contiguous, of x's shape and dtype; may be x itself (in place).

    Returns
    -------
    y : ndarray
        Of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        x or weight is not an ndarray of float32 or float64, they mix the two, or out is not
        an ndarray.
    ValueError
        weight is not 1-d with 1 or x.shape[1] elements; out has another shape or dtype, is
        read-only or not C-contiguous, or overlaps an input without being x. Nothing is
        written when it raises.

    See Also
    --------
    prelu_backward : its gradients.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.prelu(np.array([[-2.0, 1.0], [3.0, -4.0]]), np.array([0.1, 0.5]))
    array([[-0.2,  1. ],
           [ 3. , -2. ]])
    """
    where = "prelu()"
    dtype = V.storage_dtype(where, x=x, weight=weight)
    layout = _prelu_layout(where, x, weight)
    y = V.output(where, out, x.shape, dtype, inputs=(x, weight), inplace_ok=(x,))
    if dtype.itemsize == 2:     # 16-bit storage: float32 on widened copies, rounded once
        y32 = np.empty(x.shape, np.float32)
        K._activations.prelu_forward(_widened16(x, dtype), _widened16(weight, dtype), y32,
                                     *layout)
        _round16_into(y32, y, dtype)
        return y
    K._activations.prelu_forward(V.c_array(x, dtype), V.c_array(weight, dtype), y, *layout)
    return y


# Whole-array 16-bit conversions, for the paths that run a float32 kernel on widened copies
# (prelu here, linear's widening path): widen once (exact), round once on the way out.

def _widened16(a: Optional[np.ndarray], dtype: np.dtype) -> Optional[np.ndarray]:
    """A float32 copy of the 16-bit array a (exact, C-contiguous), or None for None."""
    if a is None:
        return None
    a = V.c_array(a, dtype)
    wide = np.empty(a.shape, np.float32)
    K._convert.widen(a.reshape(-1).view(np.uint16), wide.reshape(-1), V.storage_kind(dtype))
    return wide


def _round16_into(a32: np.ndarray, target: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """target (16-bit, C-contiguous) = a32 rounded once to nearest even; nothing to do when
    target is a32 itself (a float32 out=). Returns target."""
    if target is not a32:
        K._convert.narrow(a32.reshape(-1), target.reshape(-1).view(np.uint16),
                          V.storage_kind(dtype))
    return target


def prelu_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, *,
                   out: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray]]] = None
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Gradients of ``prelu`` with respect to x and to weight.

    grad_x = grad_out where x > 0, else weight[c]·grad_out; grad_weight[c] = Σ over x ≤ 0 of
    grad_out·x in channel c (summed in double; over every element when weight has one
    element).

    Parameters
    ----------
    grad_out : ndarray
        The gradient of the loss with respect to the forward's output, of x's shape and
        dtype.
    x : ndarray, float32 or float64
        The forward's input; any shape and strides.
    weight : ndarray of shape (1,) or (channels,)
        The slopes the forward used.
    out : tuple (grad_x, grad_weight) of ndarrays or None, optional
        Where to write the gradients (C-contiguous, of the results' shapes and dtype);
        grad_x may be grad_out itself.

    Returns
    -------
    grad_x : ndarray
        Of x's shape and dtype.
    grad_weight : ndarray
        Of weight's shape and dtype (float32 for 16-bit storage: a sum over many elements,
        as the norms' grad_weight). Both are written, never accumulated into.

    Raises
    ------
    TypeError
        An array that is not an ndarray of float32 or float64, arrays of both dtypes, or an
        out that is not a tuple of two arrays or None.
    ValueError
        grad_out's shape is not x's; weight is not 1-d with 1 or x.shape[1] elements; an out
        array of another shape or dtype, read-only, not C-contiguous or overlapping another
        array. Nothing is written when it raises.

    See Also
    --------
    prelu : the forward.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.array([[-2.0, 1.0], [3.0, -4.0]])
    >>> grad_x, grad_weight = mk.prelu_backward(np.ones_like(x), x, np.array([0.1, 0.5]))
    >>> grad_x
    array([[0.1, 1. ],
           [1. , 0.5]])
    >>> grad_weight
    array([-2., -4.])
    """
    where = "prelu_backward()"
    dtype = V.storage_dtype(where, grad_out=grad_out, x=x, weight=weight)
    layout = _prelu_layout(where, x, weight)
    V.shape_is(where, "grad_out", grad_out, x.shape, "the shape of x")
    out = (None, None) if out is None else out
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{where}: out must be a tuple (grad_x, grad_weight), got "
                        f"{type(out).__name__}")
    half = dtype.itemsize == 2
    gx = V.output(where, out[0], x.shape, dtype, (x, weight), "out[0] (grad_x)",
                  inplace_ok=(grad_out,))
    gw = V.output(where, out[1], weight.shape, np.dtype(np.float32) if half else dtype,
                  (grad_out, x, weight, gx), "out[1] (grad_weight)")
    if half:        # float32 on widened copies; grad_x rounded once, grad_weight float32
        gx32 = np.empty(x.shape, np.float32)
        K._activations.prelu_backward(_widened16(grad_out, dtype), _widened16(x, dtype),
                                      _widened16(weight, dtype), gx32, gw, *layout)
        _round16_into(gx32, gx, dtype)
        return gx, gw
    K._activations.prelu_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                                  V.c_array(weight, dtype), gx, gw, *layout)
    return gx, gw
