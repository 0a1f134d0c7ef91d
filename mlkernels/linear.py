"""The linear layer: ``y = x·Wᵀ + b`` and its backward, as in ``torch.nn.functional.linear``.

Kernels: ``mlkernels/_linear.pyx`` (BLAS gemm with the bias fused into the product).
"""
from __future__ import annotations

from math import prod
from typing import Optional, Tuple

import numpy as np

from . import _validate as V
from ._dispatch import K

__all__ = ["linear", "linear_backward"]


def _check_weight(where: str, x: np.ndarray, weight: np.ndarray) -> Tuple[int, int]:
    if weight.ndim != 2:
        raise ValueError(f"{where}: weight has shape {weight.shape}; expected 2-d "
                         f"(out_features, in_features)")
    if x.ndim < 1:
        raise ValueError(f"{where}: x is 0-d; expected shape (..., in_features)")
    out_features, in_features = weight.shape
    if x.shape[-1] != in_features:
        raise ValueError(f"{where}: x has shape {x.shape} but weight has shape {weight.shape}; "
                         f"expected x.shape[-1] == weight.shape[1] == in_features")
    V.blas_dim(where, "in_features", in_features)
    V.blas_dim(where, "out_features", out_features)
    return out_features, in_features


def linear(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, *,
           out: Optional[np.ndarray] = None) -> np.ndarray:
    """Apply a linear layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : array of shape (..., in_features), float32 or float64
    weight : array of shape (out_features, in_features)
    bias : array of shape (out_features,), optional
    out : C-contiguous array of shape (..., out_features), optional
        Where to write y (it must not overlap an input).

    Returns
    -------
    y : array of shape (..., out_features), the dtype of the inputs.

    The product is one BLAS gemm call; the bias is added inside it (y is pre-filled with the
    bias and gemm accumulates onto it), so it costs no extra pass over memory.
    """
    where = "linear()"
    dtype = V.float_dtype(where, x=x, weight=weight, bias=bias, optional=("bias",))
    out_features, in_features = _check_weight(where, x, weight)
    V.shape_is(where, "bias", bias, (out_features,), "out_features")
    y = V.output(where, out, x.shape[:-1] + (out_features,), dtype, inputs=(x, weight, bias))
    rows = prod(x.shape[:-1])
    K._linear.linear_forward(V.c_array(x, dtype).reshape(rows, in_features),
                             V.c_array(weight, dtype),
                             None if bias is None else V.c_array(bias, dtype),
                             y.reshape(rows, out_features))
    return y


def linear_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, *,
                    out: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray],
                                        Optional[np.ndarray]]] = None,
                    bias: bool = True) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of ``y = x @ weight.T + b`` given ``grad_out`` = dL/dy.

    Returns ``(grad_x, grad_weight, grad_bias)``::

        grad_x      = grad_out @ weight            shape (..., in_features)
        grad_weight = grad_out^T @ x               shape (out_features, in_features)
        grad_bias   = grad_out summed over rows    shape (out_features,), None if bias=False

    ``out`` may be a tuple of three arrays (or None entries) to write the gradients into;
    they are overwritten, never accumulated into. float32 bias sums accumulate in double.
    """
    where = "linear_backward()"
    dtype = V.float_dtype(where, grad_out=grad_out, x=x, weight=weight)
    out_features, in_features = _check_weight(where, x, weight)
    V.shape_is(where, "grad_out", grad_out, x.shape[:-1] + (out_features,),
               "x.shape[:-1] + (out_features,)")
    if out is None:
        out = (None, None, None)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError(f"{where}: out must be a tuple (grad_x, grad_weight, grad_bias) of "
                        f"arrays or None, got {type(out).__name__}")
    inputs = (grad_out, x, weight)
    grad_x = V.output(where, out[0], x.shape, dtype, inputs, name="out[0] (grad_x)")
    grad_weight = V.output(where, out[1], weight.shape, dtype, inputs + (grad_x,),
                           name="out[1] (grad_weight)")
    grad_bias = None
    if bias:
        grad_bias = V.output(where, out[2], (out_features,), dtype,
                             inputs + (grad_x, grad_weight), name="out[2] (grad_bias)")
    elif out[2] is not None:
        raise ValueError(f"{where}: out[2] (grad_bias) is given but bias=False; expected None")
    rows = prod(x.shape[:-1])
    K._linear.linear_backward(V.c_array(grad_out, dtype).reshape(rows, out_features),
                              V.c_array(x, dtype).reshape(rows, in_features),
                              V.c_array(weight, dtype),
                              grad_x.reshape(rows, in_features), grad_weight, grad_bias)
    return grad_x, grad_weight, grad_bias
