"""The linear layer: ``y = x·Wᵀ + b`` and its backward, as in ``torch.nn.functional.linear``.

Kernels: ``mlkernels/_linear.pyx`` (BLAS gemm with the bias fused into the product).
"""
from __future__ import annotations

from math import prod
from typing import Optional, Tuple

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads
from .activations import FUSED_WITH_LINEAR
from .activations import _round16_into, _widened16

__all__ = ["linear", "linear_backward", "ACTIVATIONS"]

#: activations the fused linear accepts, with their operation codes in _act.pxd (both from
#: the activation table, mlkernels/_activation_table.py: its rows with linear=True)
ACTIVATIONS = {name: code for name, (code, _, _) in FUSED_WITH_LINEAR.items()}
_BAND_BYTES = 2 * 2**20    # fused linear + activation: a band of rows ≈ 2 MiB of output


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
           activation: Optional[str] = None, return_preactivation: bool = False,
           out: Optional[np.ndarray] = None):
    """Apply a linear layer: ``y = x @ weight.T + bias``, optionally fused with an activation.

    Parameters
    ----------
    x : array of shape (..., in_features), float32 or float64
        Or bfloat16 (ml_dtypes) / float16 storage, with weight and bias of that dtype: a
        float32 result rounded once to x's dtype (or written as is into a float32 ``out``;
        with an ``activation``, y = act(z) and z are computed in float32 and each rounded
        once). bfloat16 on a CPU with AVX-512 BF16 multiplies the bfloat16
        operands themselves (vdpbf16ps: exact products summed in float32, subnormal inputs
        counted as 0; ``mk.info()["storage16"]``); otherwise the float32 product of the
        widened operands.
    weight : array of shape (out_features, in_features)
    bias : array of shape (out_features,), optional
    activation : str or None
        A name in ``mlkernels.linear.ACTIVATIONS`` ("relu", "gelu", "gelu_tanh", "silu",
        "sigmoid", "tanh", ...)
        Apply it to the product block by block, while each block is still in cache:
        ``y = act(x @ weight.T + bias)`` with no extra pass over memory.
    return_preactivation : bool
        Also return ``z = x @ weight.T + bias`` (before the activation), which
        ``linear_backward(..., activation=..., preactivation=z)`` needs.
    out : C-contiguous array of shape (..., out_features), optional
        Where to write y (it must not overlap an input).

    Returns
    -------
    y : array of shape (..., out_features), the dtype of the inputs; ``(y, z)`` with
    ``return_preactivation``.

    Raises
    ------
    TypeError
        If an input is not a float32/float64 array, or they mix the two.
    ValueError
        If the shapes do not fit (x.shape[-1] != in_features, bias not (out_features,)), a
        dimension is 2**31 or more (32-bit BLAS), ``activation`` is unknown, or ``out`` has
        the wrong shape or dtype, is read-only, not C-contiguous or overlaps an input.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.array([[1.0, 2.0]])
    >>> W = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    >>> mk.linear(x, W, np.array([0.5, 0.0, 0.0]))
    array([[ 1.5,  3. , -2. ]])
    >>> mk.linear(x, W, activation="relu")
    array([[1., 3., 0.]])

    The product is one single-threaded BLAS gemm per thread, each on its block of y; the bias
    is added inside it (y is pre-filled with the bias and gemm accumulates onto it), so it
    costs no extra pass over memory. With ``activation``, each thread applies it to each band
    of its rows right after the band's gemm, while the band is in cache.
    """
    where = "linear()"
    if activation is not None and activation not in ACTIVATIONS:
        V.choice(where, "activation", activation, tuple(ACTIVATIONS))
    if return_preactivation and activation is None:
        raise ValueError(f"{where}: return_preactivation=True needs an activation; expected "
                         f"one of {tuple(ACTIVATIONS)}")
    dtype = V.storage_dtype(where, x=x, weight=weight, bias=bias, optional=("bias",))
    out_features, in_features = _check_weight(where, x, weight)
    V.shape_is(where, "bias", bias, (out_features,), "out_features")
    if dtype.itemsize == 2:
        return _linear_16(where, x, weight, bias, dtype, activation, out, out_features,
                          in_features, return_preactivation)
    y = V.output(where, out, x.shape[:-1] + (out_features,), dtype, inputs=(x, weight, bias))
    rows = prod(x.shape[:-1])
    x_c, w_c = V.c_array(x, dtype), V.c_array(weight, dtype)
    b_c = None if bias is None else V.c_array(bias, dtype)
    if activation is None:
        K._linear.linear_forward(x_c, w_c, b_c, y, rows, out_features, in_features,
                                 get_num_threads())
        return y
    z = np.empty_like(y) if return_preactivation else None
    band_rows = max(16, _BAND_BYTES // max(1, out_features * dtype.itemsize))
    K._linear.linear_act_forward(x_c, w_c, b_c, y, z, ACTIVATIONS[activation], rows,
                                 out_features, in_features, band_rows, get_num_threads())
    return (y, z) if return_preactivation else y


# 16-bit storage (bfloat16 of ml_dtypes, float16), two paths:
# * bfloat16 on a CPU with AVX-512 BF16 (the avx512 variant): the products run on the bf16
#   operands themselves (vdpbf16ps, _bf16_product.h: exact products, float32 sums, twice the
#   multiply-adds per instruction of sgemm's FMA and half the bytes), the bias added and the
#   result rounded once as each band of the output is final;
# * otherwise (float16; bfloat16 elsewhere): the operands are widened to float32 once
#   (_convert, vectorized) and the float32 sgemm path runs; results are rounded once to the
#   storage dtype (or written as float32 into a float32 out=). So such a result is the
#   float32 linear's on the widened operands, rounded.
# docs/kernels/bf16.md has the measurements and the numerics of both.

_BF16_PRODUCT = True       # the tests turn it off to check the widening path on any CPU


def _bf16_product(dtype) -> bool:
    """Whether this call's products run on the bfloat16 operands (vdpbf16ps)."""
    return (_BF16_PRODUCT and V.storage_kind(dtype) == V.STORAGE_KIND_BF16
            and K._linear.bf16_product_available())


def _bits(a, dtype):
    """a (16-bit) C-contiguous, seen as uint16."""
    return V.c_array(a, dtype).view(np.uint16)


def _view_for_product(a):
    """An output of bf16_product: float32 as it is, bfloat16 seen as uint16."""
    return a if a.dtype == np.float32 else a.view(np.uint16)


def _output_16(where, out, shape, dtype, inputs, name="out"):
    """A 16-bit call's output: the storage dtype (default) or a float32 out=."""
    if isinstance(out, np.ndarray) and out.dtype == np.float32:
        return V.output(where, out, shape, np.dtype(np.float32), inputs, name=name)
    return V.output(where, out, shape, dtype, inputs, name=name)


def _linear_16(where, x, weight, bias, dtype, activation, out, out_features, in_features,
               return_preactivation=False):
    y = _output_16(where, out, x.shape[:-1] + (out_features,), dtype, (x, weight, bias))
    rows, nt, product = prod(x.shape[:-1]), get_num_threads(), _bf16_product(dtype)
    if activation is None and product:
        K._linear.bf16_product(_bits(x, dtype), in_features, 1, _bits(weight, dtype),
                               in_features, 1, rows, out_features, in_features,
                               _widened16(bias, dtype), _view_for_product(y), nt)
        return y
    y32 = y if y.dtype == np.float32 else np.empty(y.shape, np.float32)
    if activation is None:
        K._linear.linear_forward(_widened16(x, dtype), _widened16(weight, dtype),
                                 _widened16(bias, dtype), y32, rows, out_features, in_features, nt)
        return _round16_into(y32, y, dtype)
    # fused: z = x·Wᵀ + b and y = act(z) in float32, each rounded once (z only if asked)
    z32 = np.empty(y.shape, np.float32) if return_preactivation or product else None
    if product:
        K._linear.bf16_product(_bits(x, dtype), in_features, 1, _bits(weight, dtype),
                               in_features, 1, rows, out_features, in_features,
                               _widened16(bias, dtype), z32, nt)
        from . import activations as A
        _, name, kw = FUSED_WITH_LINEAR[activation]
        getattr(A, name)(z32, **kw, out=y32)
    else:
        band_rows = max(16, _BAND_BYTES // max(1, out_features * 4))
        K._linear.linear_act_forward(_widened16(x, dtype), _widened16(weight, dtype),
                                     _widened16(bias, dtype), y32, z32, ACTIVATIONS[activation],
                                     rows, out_features, in_features, band_rows, nt)
    _round16_into(y32, y, dtype)
    if not return_preactivation:
        return y
    z = z32 if y.dtype == np.float32 else _round16_into(z32, np.empty(y.shape, dtype), dtype)
    return y, z


def linear_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, *,
                    out: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray],
                                        Optional[np.ndarray]]] = None,
                    bias: bool = True, activation: Optional[str] = None,
                    preactivation: Optional[np.ndarray] = None, compute_grad_x: bool = True
                    ) -> Tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray]]:
    """Gradients of ``y = x @ weight.T + b`` given ``grad_out`` = dL/dy.

    Parameters
    ----------
    grad_out : numpy.ndarray
        dL/dy, of shape x.shape[:-1] + (out_features,).
    x : numpy.ndarray
        The forward's input (..., in_features), float32 or float64.
    weight : numpy.ndarray
        (out_features, in_features).
    out : tuple of three arrays or None, optional
        Where to write (grad_x, grad_weight, grad_bias); None entries are allocated.
    bias : bool, default True
        Whether the layer has a bias (else grad_bias is None).
    activation : str, optional
        The fused forward's activation (see below), with ``preactivation``.
    preactivation : numpy.ndarray, optional
        z from ``linear(..., activation=..., return_preactivation=True)``. With 16-bit
        storage, the activation's gradient (grad_out·act'(z), the activation's own 16-bit
        backward) is rounded to the storage dtype before the products, as each op's output
        of a bfloat16 autograd graph is.
    compute_grad_x : bool, default True
        False skips grad_x (returned as None).

    Returns ``(grad_x, grad_weight, grad_bias)``::

        grad_x      = grad_out @ weight            shape (..., in_features)
        grad_weight = grad_out^T @ x               shape (out_features, in_features)
        grad_bias   = grad_out summed over rows    shape (out_features,), None if bias=False

    ``out`` may be a tuple of three arrays (or None entries) to write the gradients into;
    they are overwritten, never accumulated into. float32 bias sums accumulate in double.
    ``compute_grad_x=False`` skips grad_x (returned as None; ``out[0]`` must be None): the
    first layer of a network needs no gradient for its input, and it is a third of the work.

    For a fused ``linear(..., activation=act, return_preactivation=True)``, pass the same
    ``activation`` and its ``preactivation`` z: grad_out (dL/dy) is first turned into
    dL/dz = grad_out·act'(z) -- the derivative needs z, not y (except for relu).

    Raises
    ------
    TypeError
        If an array is not float32/float64, they mix the two, or ``out`` is not a triple.
    ValueError
        If the shapes do not fit, an ``out`` entry is unusable (wrong shape or dtype,
        read-only, not C-contiguous, overlapping), or ``activation``/``preactivation`` do not
        go together. Nothing is written then.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x, W = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])
    >>> gx, gW, gb = mk.linear_backward(np.array([[1.0]]), x, W)
    >>> gx, gW, gb
    (array([[3., 4.]]), array([[1., 2.]]), array([1.]))
    """
    where = "linear_backward()"
    if activation is not None:
        if activation not in ACTIVATIONS:
            V.choice(where, "activation", activation, tuple(ACTIVATIONS))
        if preactivation is None:
            raise ValueError(f"{where}: activation={activation!r} needs preactivation, the z "
                             f"returned by linear(..., return_preactivation=True)")
        from . import activations as A
        V.storage_dtype(where, grad_out=grad_out, preactivation=preactivation)
        V.shape_is(where, "preactivation", preactivation, np.shape(grad_out),
                   "the shape of grad_out")
        _, name, kw = FUSED_WITH_LINEAR[activation]
        grad_out = getattr(A, name + "_backward")(grad_out, preactivation, **kw)
    elif preactivation is not None:
        raise ValueError(f"{where}: preactivation is given without an activation")
    dtype = V.storage_dtype(where, grad_out=grad_out, x=x, weight=weight)
    out_features, in_features = _check_weight(where, x, weight)
    V.shape_is(where, "grad_out", grad_out, x.shape[:-1] + (out_features,),
               "x.shape[:-1] + (out_features,)")
    if out is None:
        out = (None, None, None)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError(f"{where}: out must be a tuple (grad_x, grad_weight, grad_bias) of "
                        f"arrays or None, got {type(out).__name__}")
    inputs = (grad_out, x, weight)
    output = V.output if dtype.itemsize != 2 else _output_16
    if compute_grad_x:
        grad_x = output(where, out[0], x.shape, dtype, inputs, name="out[0] (grad_x)")
    elif out[0] is not None:
        raise ValueError(f"{where}: out[0] (grad_x) is given but compute_grad_x=False; "
                         f"expected None")
    else:
        grad_x = None
    grad_weight = output(where, out[1], weight.shape, dtype, inputs + (grad_x,),
                         name="out[1] (grad_weight)")
    grad_bias = None
    if bias:
        grad_bias = output(where, out[2], (out_features,), dtype,
                           inputs + (grad_x, grad_weight), name="out[2] (grad_bias)")
    elif out[2] is not None:
        raise ValueError(f"{where}: out[2] (grad_bias) is given but bias=False; expected None")
    rows = prod(x.shape[:-1])
    if _bf16_product(dtype):    # grad_x = g·W, grad_W = gᵀ·x on the bf16 operands
        g, xs, ws, nt = _bits(grad_out, dtype), _bits(x, dtype), _bits(weight, dtype), \
            get_num_threads()
        if grad_x is not None:
            K._linear.bf16_product(g, out_features, 1, ws, 1, in_features, rows, in_features,
                                   out_features, None, _view_for_product(grad_x), nt)
        K._linear.bf16_product(g, 1, out_features, xs, 1, in_features, out_features,
                               in_features, rows, None, _view_for_product(grad_weight), nt)
        if grad_bias is not None:
            gb = grad_bias if grad_bias.dtype == np.float32 else np.empty(out_features, np.float32)
            K._linear.bias_grad(_widened16(grad_out, dtype), gb, rows, out_features, nt)
            _round16_into(gb, grad_bias, dtype)
        return grad_x, grad_weight, grad_bias
    if dtype.itemsize == 2:     # float32 on the widened operands, each result rounded once
        wide = [None if a is None else a if a.dtype == np.float32 else
                np.empty(a.shape, np.float32) for a in (grad_x, grad_weight, grad_bias)]
        K._linear.linear_backward(_widened16(grad_out, dtype), _widened16(x, dtype),
                                  _widened16(weight, dtype), *wide, rows, out_features,
                                  in_features, get_num_threads())
        return tuple(None if a is None else _round16_into(w, a, dtype)
                     for w, a in zip(wide, (grad_x, grad_weight, grad_bias)))
    K._linear.linear_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                              V.c_array(weight, dtype), grad_x, grad_weight, grad_bias,
                              rows, out_features, in_features, get_num_threads())
    return grad_x, grad_weight, grad_bias
