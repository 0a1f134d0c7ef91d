"""Normalization: BatchNorm, LayerNorm, RMSNorm and GroupNorm, forward and backward, with
torch.nn.functional's semantics.

Forwards return what their backward needs: ``layer_norm`` -> ``(y, mean, rstd)`` (mean and
rstd of shape ``x.shape[:-len(normalized_shape)]``), ``rms_norm`` -> ``(y, rstd)``,
``group_norm`` -> ``(y, mean, rstd)`` (shape ``(N, num_groups)``), ``batch_norm`` ->
``(y, save_mean, save_rstd)`` (shape ``(C,)``; in eval mode, the running statistics used).
Backwards return ``grad_weight``/``grad_bias`` as None when there is no weight/bias.
``out=`` takes the result array, or a tuple with one array (or None) per returned array.
Kernels: ``mlkernels/_norm.pyx``.
"""
from __future__ import annotations

from math import prod
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _validate as V
from ._dispatch import K

__all__ = ["layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
           "group_norm", "group_norm_backward", "batch_norm", "batch_norm_backward"]

Shape = Union[int, Sequence[int]]


# ------------------------------------------------------------------ helpers
# Each function checks every argument (mlkernels/_validate.pyx) and every out= array before the
# kernel runs, then hands the arrays to the entry of the same name in _norm.pyx, which reads
# their data pointers: no reshaped views, no temporaries, the statistics written and read in
# the arrays' own type.

def _normalized(where: str, x: np.ndarray, normalized_shape: Shape) -> Tuple[tuple, int, int]:
    """(normalized_shape as a tuple, rows, cols): x seen as (rows, cols)."""
    if type(normalized_shape) is int and normalized_shape > 0 and x.ndim \
            and x.shape[-1] == normalized_shape:          # the common case, checked in full
        return (normalized_shape,), x.size // normalized_shape, normalized_shape
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(normalized_shape)
    if not shape or any(not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
        raise ValueError(f"{where}: normalized_shape is {normalized_shape!r}; expected a "
                         f"non-empty tuple of sizes")
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"{where}: normalized_shape {shape} does not match the trailing "
                         f"dimensions of x, of shape {x.shape}; expected "
                         f"x.shape[-{len(shape)}:] == {shape}")
    cols = prod(shape)
    return shape, (x.size // cols if cols else prod(x.shape[:x.ndim - len(shape)])), cols


_INF = float("inf")


def _eps(where, eps):
    if type(eps) is float and 0.0 <= eps < _INF:        # the common case (NaN fails it)
        return eps
    return V.number(where, "eps", eps, low=0.0)


def _c(a, dtype):
    return None if a is None else V.c_array(a, dtype)


# 16-bit storage (bfloat16 of ml_dtypes, float16): x, weight, bias and y in the storage dtype,
# computed as float32 computes (the float32 row kernel on blocks widened in cache), each value
# of y rounded once; mean and rstd stay float32 (what the backward needs to full precision).

_F32 = np.dtype(np.float32)


def _half_outputs(where, out, names, shapes, dtype, inputs):
    """y (the storage dtype) and the float32 statistics, every one checked before any write."""
    listed = isinstance(out, (tuple, list))
    if listed and len(out) != len(names) or not (listed or out is None
                                                  or isinstance(out, np.ndarray)):
        raise TypeError(f"{where}: out must be an array or a tuple ({', '.join(names)}) of "
                        f"arrays or None, got {type(out).__name__}")
    entries = tuple(out) if listed else (out,) + (None,) * (len(names) - 1)
    y = V.output(where, entries[0], shapes[0], dtype, inputs, name=f"out ({names[0]})")
    stats = V.outputs(where, entries[1:], names[1:], shapes[1:], _F32, inputs + (y,))
    return [y] + stats


def _half_norm(norm, where, x, weight, bias, dtype, shape, rows, cols, lead, eps, out,
               groups=1, S=1):
    names, shapes = (("y", "mean", "rstd"), (x.shape, lead, lead)) if norm != 1 else \
        (("y", "rstd"), (x.shape, lead))
    results = _half_outputs(where, out, names, shapes, dtype, (x, weight, bias))
    w = None if weight is None else np.ascontiguousarray(weight, dtype=_F32)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=_F32)
    K._norm.half_norm(norm, V.storage_kind(dtype), V.c_array(x, dtype), w, b, results[0],
                      results[1] if norm != 1 else None, results[-1], rows, cols, eps,
                      groups, S)
    return tuple(results)


def _half_norm_backward(norm, where, grad_out, x, mean, rstd, weight, has_bias, dtype, shape,
                        rows, cols, out, groups=1, S=1):
    """The backward of _half_norm: grad_x in the storage dtype; grad_weight and grad_bias
    float32 -- sums over every row, kept at the precision the float32 kernel gives them (an
    optimizer's float32 master weights or states take them as they are; rounding them to 16
    bits would drop the digits that a small update needs)."""
    names = ("grad_x", "grad_weight", "grad_bias")[:2 if norm == 1 else 3]
    shapes = (x.shape, shape if weight is not None else None,
              shape if has_bias else None)[:len(names)]
    stats = (rstd,) if norm == 1 else (mean, rstd)
    results = _half_outputs(where, out, names, shapes, dtype, (grad_out, x, weight) + stats)
    w = None if weight is None else np.ascontiguousarray(weight, dtype=_F32)
    K._norm.half_norm_backward(norm, V.storage_kind(dtype), V.c_array(grad_out, dtype),
                               V.c_array(x, dtype), None if mean is None else
                               V.c_array(mean, _F32), V.c_array(rstd, _F32), w, results[0],
                               results[1], results[2] if norm != 1 else None, rows, cols,
                               groups, S)
    return tuple(results)


# ------------------------------------------------------------------ LayerNorm

def layer_norm(x: np.ndarray, normalized_shape: Shape, weight: Optional[np.ndarray] = None,
               bias: Optional[np.ndarray] = None, eps: float = 1e-5, *, out=None
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer normalization over the trailing ``normalized_shape`` dimensions.

    y = (x − E[x]) / √(Var[x] + eps) · weight + bias, the variance biased and eps inside the
    square root, as ``torch.nn.functional.layer_norm``.

    Parameters
    ----------
    x : ndarray, float32 or float64, or 16-bit storage: bfloat16 (ml_dtypes) or float16
        16-bit x (and weight, bias, y of the same dtype) is computed as float32 computes and
        each value of y rounded once: y is the float32 result, rounded; mean and rstd are
        float32.
        Trailing dimensions ``normalized_shape``; any strides (a copy is made if needed).
    normalized_shape : int or tuple of int
    weight, bias : ndarray of shape ``normalized_shape``, optional
        Elementwise affine parameters γ and β (None: 1 and 0).
    eps : float, default 1e-5
    out : ndarray, or tuple (y, mean, rstd) of ndarrays or None, optional
        Where to write the results (one array: y); C-contiguous, of the results' shapes and
        dtype.

    Returns
    -------
    y : ndarray, the shape of x
    mean, rstd : ndarray of shape ``x.shape[:-len(normalized_shape)]``
        Each row's mean and 1/√(var + eps), in x's dtype: what ``layer_norm_backward`` takes.

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64, arrays of both
        dtypes in one call, or an ``out`` that is neither an array nor a tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> y, mean, rstd = mk.layer_norm(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]]), 3)
    >>> y.round(4)
    array([[-1.2247,  0.    ,  1.2247],
           [-0.7071, -0.7071,  1.4142]])
    >>> mean
    array([2., 1.])
    """
    where = "layer_norm()"
    dtype = V.storage_dtype(where, x=x, weight=weight, bias=bias, optional=("weight", "bias"))
    shape, rows, cols = _normalized(where, x, normalized_shape)
    V.shape_is(where, "weight", weight, shape, "normalized_shape")
    V.shape_is(where, "bias", bias, shape, "normalized_shape")
    eps = _eps(where, eps)
    lead = x.shape[:x.ndim - len(shape)]
    if dtype.itemsize == 2:
        return _half_norm(0, where, x, weight, bias, dtype, shape, rows, cols, lead, eps, out)
    y, mean, rstd = V.outputs(where, out, ("y", "mean", "rstd"), (x.shape, lead, lead), dtype,
                              (x, weight, bias))
    K._norm.layer_norm(V.c_array(x, dtype), _c(weight, dtype), _c(bias, dtype), y, mean, rstd,
                       rows, cols, eps)
    return y, mean, rstd


def _float32_stats(where, dtype, how, **stats):
    """With 16-bit data, a norm's statistics arrays must be float32: the ones a backward takes
    as the forward returned them (how="returned"), and BatchNorm's running statistics
    (how="kept", None allowed), kept in float32 because a 16-bit running statistic would lose
    the momentum updates."""
    for name, a in stats.items():
        if a is None and how == "kept":
            continue
        if not isinstance(a, np.ndarray):
            V.float_dtype(where, **{name: a})           # its message: not an array
        if a.dtype != _F32:
            raise TypeError(f"{where}: {name} has dtype {a.dtype} but must be float32 with "
                            f"{dtype} data (" + ("BatchNorm's running statistics are kept in "
                                                 "float32" if how == "kept" else
                                                 "as the forward returned it") + ")")


def _row_backward_checks(where, grad_out, x, stats, weight, stat_shape, wshape):
    """The dtype shared by every array of a row norm's backward, after checking the shapes of
    grad_out, the statistics (as the forward returned them) and weight. With 16-bit storage
    (grad_out, x and weight bfloat16 or float16) the statistics are float32, as the forward
    returned them."""
    dtype = V.storage_dtype(where, grad_out=grad_out, x=x, weight=weight,
                            optional=("weight",))
    if dtype.itemsize == 2:
        V.float_dtype(where, **stats)           # arrays of one float dtype (its messages)
        _float32_stats(where, dtype, "returned", **stats)
    else:
        dtype = V.float_dtype(where, grad_out=grad_out, x=x, weight=weight, **stats,
                              optional=("weight",))
    V.shape_is(where, "grad_out", grad_out, x.shape, "the shape of x")
    V.shape_is(where, "weight", weight, wshape)
    for name, s in stats.items():
        V.shape_is(where, name, s, stat_shape, "as the forward returned it")
    return dtype


def layer_norm_backward(grad_out: np.ndarray, x: np.ndarray, normalized_shape: Shape,
                        mean: np.ndarray, rstd: np.ndarray, weight: Optional[np.ndarray] = None,
                        *, has_bias: Optional[bool] = None, out=None
                        ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients of ``layer_norm``, with x̂ = (x − mean)·rstd and ĝ = grad_out·weight::

        grad_x = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂))      (means over each row)
        grad_weight = Σ grad_out·x̂,  grad_bias = Σ grad_out   (sums over the leading dims)

    Parameters
    ----------
    grad_out, x : ndarray, the shape of the forward's x
        float32 or float64, or 16-bit storage (bfloat16 of ml_dtypes, or float16; weight of
        the same dtype): computed as float32 computes, grad_x rounded once to that dtype,
        grad_weight and grad_bias float32 (sums over every row, kept at float32's precision).
    normalized_shape : int or tuple of int
    mean, rstd : ndarray
        As ``layer_norm`` returned them (any layout; float32 with 16-bit x).
    weight : ndarray of shape ``normalized_shape``, optional
    has_bias : bool, optional
        Whether to compute grad_bias (default: whether there is a weight).
    out : ndarray, or tuple (grad_x, grad_weight, grad_bias) of ndarrays or None, optional
        Written, never accumulated into.

    Returns
    -------
    grad_x : ndarray, the shape of x
    grad_weight, grad_bias : ndarray of shape ``normalized_shape``, or None
        None without a weight (grad_weight) or without ``has_bias`` (grad_bias).

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64, arrays of both
        dtypes in one call, or an ``out`` that is neither an array nor a tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.array([[1.0, 2.0, 3.0]])
    >>> y, mean, rstd = mk.layer_norm(x, 3, np.ones(3), np.zeros(3))
    >>> gx, gw, gb = mk.layer_norm_backward(np.array([[1.0, 0.0, 0.0]]), x, 3, mean, rstd,
    ...                                     np.ones(3))
    >>> gx.round(4), gw.round(4), gb
    (array([[ 0.2041, -0.4082,  0.2041]]), array([-1.2247,  0.    ,  0.    ]), array([1., 0., 0.]))
    """
    where = "layer_norm_backward()"
    if not isinstance(x, np.ndarray):
        V.float_dtype(where, x=x)
    shape, rows, cols = _normalized(where, x, normalized_shape)
    lead = x.shape[:x.ndim - len(shape)]
    dtype = _row_backward_checks(where, grad_out, x, {"mean": mean, "rstd": rstd}, weight,
                                 lead, shape)
    has_bias = weight is not None if has_bias is None else bool(has_bias)
    if dtype.itemsize == 2:
        return _half_norm_backward(0, where, grad_out, x, mean, rstd, weight, has_bias,
                                   dtype, shape, rows, cols, out)
    gx, gw, gb = V.outputs(where, out, ("grad_x", "grad_weight", "grad_bias"),
                           (x.shape, shape if weight is not None else None,
                            shape if has_bias else None),
                           dtype, (grad_out, x, weight, mean, rstd))
    K._norm.layer_norm_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                                V.c_array(mean, dtype), V.c_array(rstd, dtype),
                                _c(weight, dtype), gx, gw, gb, rows, cols)
    return gx, gw, gb


# ------------------------------------------------------------------ RMSNorm

def rms_norm(x: np.ndarray, normalized_shape: Shape, weight: Optional[np.ndarray] = None,
             eps: Optional[float] = None, *, out=None) -> Tuple[np.ndarray, np.ndarray]:
    """RMS normalization over the trailing ``normalized_shape`` dimensions.

    y = x / √(mean(x²) + eps) · weight, as ``torch.nn.functional.rms_norm``.

    Parameters
    ----------
    x : ndarray, float32 or float64, or 16-bit storage: bfloat16 (ml_dtypes) or float16
        16-bit x (and weight, bias, y of the same dtype) is computed as float32 computes and
        each value of y rounded once: y is the float32 result, rounded; mean and rstd are
        float32.
    normalized_shape : int or tuple of int
    weight : ndarray of shape ``normalized_shape``, optional
    eps : float, optional
        None (default): the machine epsilon of x's dtype, as torch.
    out : ndarray, or tuple (y, rstd) of ndarrays or None, optional

    Returns
    -------
    y : ndarray, the shape of x
    rstd : ndarray of shape ``x.shape[:-len(normalized_shape)]``
        1/√(mean(x²) + eps) per row, in x's dtype: what ``rms_norm_backward`` takes.

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64, arrays of both
        dtypes in one call, or an ``out`` that is neither an array nor a tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> y, rstd = mk.rms_norm(np.array([[1.0, 2.0, 3.0]]), 3)
    >>> y.round(4), rstd.round(4)
    (array([[0.4629, 0.9258, 1.3887]]), array([0.4629]))
    """
    where = "rms_norm()"
    dtype = V.storage_dtype(where, x=x, weight=weight, optional=("weight",))
    shape, rows, cols = _normalized(where, x, normalized_shape)
    V.shape_is(where, "weight", weight, shape, "normalized_shape")
    eps = float(np.finfo(V.compute_dtype(dtype)).eps) if eps is None else _eps(where, eps)
    lead = x.shape[:x.ndim - len(shape)]
    if dtype.itemsize == 2:
        return _half_norm(1, where, x, weight, None, dtype, shape, rows, cols, lead, eps, out)
    y, rstd = V.outputs(where, out, ("y", "rstd"), (x.shape, lead), dtype, (x, weight))
    K._norm.rms_norm(V.c_array(x, dtype), _c(weight, dtype), y, rstd, rows, cols, eps)
    return y, rstd


def rms_norm_backward(grad_out: np.ndarray, x: np.ndarray, normalized_shape: Shape,
                      rstd: np.ndarray, weight: Optional[np.ndarray] = None, *, out=None
                      ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Gradients of ``rms_norm``, with x̂ = x·rstd and ĝ = grad_out·weight::

        grad_x = rstd · (ĝ − x̂ · mean(ĝ·x̂)),   grad_weight = Σ grad_out·x̂

    Parameters
    ----------
    grad_out, x : ndarray, the shape of the forward's x
        float32 or float64, or 16-bit storage (bfloat16 of ml_dtypes, or float16; weight of
        the same dtype): computed as float32 computes, grad_x rounded once to that dtype,
        grad_weight float32.
    normalized_shape : int or tuple of int
    rstd : ndarray
        As ``rms_norm`` returned it (any layout; float32 with 16-bit x).
    weight : ndarray of shape ``normalized_shape``, optional
    out : ndarray, or tuple (grad_x, grad_weight) of ndarrays or None, optional

    Returns
    -------
    grad_x : ndarray, the shape of x
    grad_weight : ndarray of shape ``normalized_shape``, or None without a weight

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64, arrays of both
        dtypes in one call, or an ``out`` that is neither an array nor a tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.array([[1.0, 2.0, 3.0]])
    >>> y, rstd = mk.rms_norm(x, 3, np.ones(3))
    >>> gx, gw = mk.rms_norm_backward(np.array([[1.0, 0.0, 0.0]]), x, 3, rstd, np.ones(3))
    >>> gx.round(4), gw.round(4)
    (array([[ 0.4298, -0.0661, -0.0992]]), array([0.4629, 0.    , 0.    ]))
    """
    where = "rms_norm_backward()"
    if not isinstance(x, np.ndarray):
        V.float_dtype(where, x=x)
    shape, rows, cols = _normalized(where, x, normalized_shape)
    lead = x.shape[:x.ndim - len(shape)]
    dtype = _row_backward_checks(where, grad_out, x, {"rstd": rstd}, weight, lead, shape)
    if dtype.itemsize == 2:
        return _half_norm_backward(1, where, grad_out, x, None, rstd, weight, False, dtype,
                                   shape, rows, cols, out)
    gx, gw = V.outputs(where, out, ("grad_x", "grad_weight"),
                       (x.shape, shape if weight is not None else None), dtype,
                       (grad_out, x, weight, rstd))
    K._norm.rms_norm_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                              V.c_array(rstd, dtype), _c(weight, dtype), gx, gw, rows, cols)
    return gx, gw


# ------------------------------------------------------------------ GroupNorm

def _groups(where: str, x: np.ndarray, num_groups) -> Tuple[int, int, int, int]:
    if x.ndim < 2:
        raise ValueError(f"{where}: x has shape {x.shape}; expected (N, C, *spatial)")
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) \
            or num_groups < 1:
        raise ValueError(f"{where}: num_groups is {num_groups!r}; expected an int >= 1")
    N, C = x.shape[:2]
    if C % num_groups:
        raise ValueError(f"{where}: num_groups={num_groups} does not divide the {C} channels "
                         f"of x; expected a divisor of {C}")
    return N, C, int(num_groups), prod(x.shape[2:])


def group_norm(x: np.ndarray, num_groups: int, weight: Optional[np.ndarray] = None,
               bias: Optional[np.ndarray] = None, eps: float = 1e-5, *, out=None
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group normalization, as ``torch.nn.functional.group_norm``.

    Each sample's channels are split into ``num_groups`` groups of C/num_groups channels;
    each group (with all its spatial values) is normalized like a LayerNorm row, then
    y = x̂·weight[c] + bias[c] per channel c.

    Parameters
    ----------
    x : ndarray of shape (N, C, *spatial), float32 or float64, or 16-bit storage: bfloat16
        (ml_dtypes) or float16
        16-bit x (and weight, bias, y of the same dtype) is computed as float32 computes and
        each value of y rounded once: y is the float32 result, rounded; mean and rstd are
        float32.
    num_groups : int
        A divisor of C.
    weight, bias : ndarray of shape (C,), optional
    eps : float, default 1e-5
    out : ndarray, or tuple (y, mean, rstd) of ndarrays or None, optional

    Returns
    -------
    y : ndarray, the shape of x
    mean, rstd : ndarray of shape (N, num_groups), in x's dtype (float32 with 16-bit x)

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64, arrays of both
        dtypes in one call, or an ``out`` that is neither an array nor a tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> y, mean, rstd = mk.group_norm(np.arange(8.0).reshape(1, 4, 2), 2)
    >>> mean, y[0, :2].round(4)
    (array([[1.5, 5.5]]), array([[-1.3416, -0.4472],
           [ 0.4472,  1.3416]]))
    """
    where = "group_norm()"
    dtype = V.storage_dtype(where, x=x, weight=weight, bias=bias, optional=("weight", "bias"))
    N, C, G, S = _groups(where, x, num_groups)
    V.shape_is(where, "weight", weight, (C,), "one per channel")
    V.shape_is(where, "bias", bias, (C,), "one per channel")
    eps = _eps(where, eps)
    if dtype.itemsize == 2:
        return _half_norm(2, where, x, weight, bias, dtype, (C,), N * G, C // G, (N, G), eps,
                          out, G, S)
    y, mean, rstd = V.outputs(where, out, ("y", "mean", "rstd"), (x.shape, (N, G), (N, G)),
                              dtype, (x, weight, bias))
    K._norm.group_norm(V.c_array(x, dtype), _c(weight, dtype), _c(bias, dtype), y, mean, rstd,
                       N, C, G, S, eps)
    return y, mean, rstd


def group_norm_backward(grad_out: np.ndarray, x: np.ndarray, num_groups: int,
                        mean: np.ndarray, rstd: np.ndarray, weight: Optional[np.ndarray] = None,
                        *, has_bias: Optional[bool] = None, out=None
                        ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients of ``group_norm``: LayerNorm's formulas over each group, with grad_weight
    and grad_bias summed per channel (over the samples and spatial positions).

    Parameters
    ----------
    grad_out, x : ndarray of shape (N, C, *spatial)
        float32 or float64, or 16-bit storage (bfloat16 of ml_dtypes, or float16; weight of
        the same dtype): computed as float32 computes, grad_x rounded once to that dtype,
        grad_weight and grad_bias float32 (sums over every sample, kept at float32's
        precision).
    num_groups : int
    mean, rstd : ndarray of shape (N, num_groups)
        As ``group_norm`` returned them (any layout; float32 with 16-bit x).
    weight : ndarray of shape (C,), optional
    has_bias : bool, optional
        Whether to compute grad_bias (default: whether there is a weight).
    out : ndarray, or tuple (grad_x, grad_weight, grad_bias) of ndarrays or None, optional

    Returns
    -------
    grad_x : ndarray, the shape of x
    grad_weight, grad_bias : ndarray of shape (C,), or None

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64, arrays of both
        dtypes in one call, or an ``out`` that is neither an array nor a tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.arange(8.0).reshape(1, 4, 2)
    >>> y, mean, rstd = mk.group_norm(x, 2, np.ones(4), np.zeros(4))
    >>> gx, gw, gb = mk.group_norm_backward(np.ones_like(x), x, 2, mean, rstd, np.ones(4))
    >>> gb, bool(np.abs(gx).max() < 1e-12)
    (array([2., 2., 2., 2.]), True)
    """
    where = "group_norm_backward()"
    V.storage_dtype(where, x=x)
    N, C, G, S = _groups(where, x, num_groups)
    dtype = _row_backward_checks(where, grad_out, x, {"mean": mean, "rstd": rstd}, weight,
                                 (N, G), (C,))
    has_bias = weight is not None if has_bias is None else bool(has_bias)
    if dtype.itemsize == 2:
        return _half_norm_backward(2, where, grad_out, x, mean, rstd, weight, has_bias,
                                   dtype, (C,), N * G, C // G, out, G, S)
    gx, gw, gb = V.outputs(where, out, ("grad_x", "grad_weight", "grad_bias"),
                           (x.shape, (C,) if weight is not None else None,
                            (C,) if has_bias else None),
                           dtype, (grad_out, x, weight, mean, rstd))
    K._norm.group_norm_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                                V.c_array(mean, dtype), V.c_array(rstd, dtype),
                                _c(weight, dtype), gx, gw, gb, N, C, G, S)
    return gx, gw, gb


# ------------------------------------------------------------------ BatchNorm

def _bn_layout(where: str, x: np.ndarray) -> Tuple[int, int, int]:
    if x.ndim < 2:
        raise ValueError(f"{where}: x has shape {x.shape}; expected (N, C) or (N, C, *spatial)")
    return x.shape[0], x.shape[1], prod(x.shape[2:])


def _half_batch_norm(where, x, running_mean, running_var, weight, bias, training, factor, eps,
                     out, dtype, N, C, S):
    """batch_norm of 16-bit x (all arguments checked but out): y in x's dtype, the float32
    kernel's result rounded once; save_mean, save_rstd and the running statistics float32,
    the float32 kernel's bit for bit."""
    y, save_mean, save_rstd = _half_outputs(where, out, ("y", "save_mean", "save_rstd"),
                                            (x.shape, (C,), (C,)), dtype,
                                            (x, running_mean, running_var, weight, bias))
    if training:        # updated in place: the arrays themselves (checked)
        rm, rv = running_mean, running_var
    else:               # read only
        rm, rv = _c(running_mean, _F32), _c(running_var, _F32)
    K._norm.half_batch_norm(V.storage_kind(dtype), V.c_array(x, dtype), rm, rv,
                            _c(weight, _F32), _c(bias, _F32), y, save_mean, save_rstd, N, C, S,
                            training, factor, eps)
    return y, save_mean, save_rstd


def _half_batch_norm_backward(where, grad_out, x, save_mean, save_rstd, weight, training,
                              has_bias, out, dtype, N, C, S):
    """batch_norm_backward of 16-bit grad_out and x: grad_x in their dtype (the float32
    kernel's, rounded once); grad_weight and grad_bias float32, the float32 kernel's bit for
    bit (sums over every sample: an optimizer's float32 master weights or states take them
    as they are)."""
    gx, gw, gb = _half_outputs(where, out, ("grad_x", "grad_weight", "grad_bias"),
                               (x.shape, (C,) if weight is not None else None,
                                (C,) if has_bias else None),
                               dtype, (grad_out, x, save_mean, save_rstd, weight))
    K._norm.half_batch_norm_backward(V.storage_kind(dtype), V.c_array(grad_out, dtype),
                                     V.c_array(x, dtype), V.c_array(save_mean, _F32),
                                     V.c_array(save_rstd, _F32), _c(weight, _F32), gx, gw, gb,
                                     N, C, S, training)
    return gx, gw, gb


def batch_norm(x: np.ndarray, running_mean: Optional[np.ndarray],
               running_var: Optional[np.ndarray], weight: Optional[np.ndarray] = None,
               bias: Optional[np.ndarray] = None, training: bool = False,
               momentum: Optional[float] = 0.1, eps: float = 1e-5, *, out=None,
               num_batches_tracked: Optional[int] = None
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalization over (N, C) or (N, C, *spatial), per channel C, as
    ``torch.nn.functional.batch_norm``.

    Training: normalize with the batch mean and biased variance; update ``running_mean`` and
    ``running_var`` in place: r ← (1 − momentum)·r + momentum·batch (the variance unbiased,
    × n/(n−1)). ``momentum=None`` is the cumulative average: pass ``num_batches_tracked``
    (the count including this batch) and the factor is 1/num_batches_tracked, as torch's
    module does. Eval: normalize with the running statistics (which stay frozen).

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial), float32 or float64, or 16-bit storage:
        bfloat16 (ml_dtypes) or float16
        16-bit x (and weight, bias, y of the same dtype) is computed as float32 computes and
        each value of y rounded once: y is the float32 result, rounded; save_mean, save_rstd
        and the running statistics are float32, the float32 kernel's bit for bit.
    running_mean, running_var : ndarray of shape (C,), or None
        None: no running statistics (training must then be True, as torch). Updated in place
        in training, so then writeable C-contiguous arrays of x's dtype (float32 with 16-bit
        x: a 16-bit running statistic would lose the momentum updates).
    weight, bias : ndarray of shape (C,), optional
    training : bool, default False
    momentum : float in [0, 1] or None, default 0.1
    eps : float, default 1e-5
    out : ndarray, or tuple (y, save_mean, save_rstd) of ndarrays or None, optional
    num_batches_tracked : int, optional
        With ``momentum=None``: the number of training batches including this one.

    Returns
    -------
    y : ndarray, the shape of x
    save_mean, save_rstd : ndarray of shape (C,), in x's dtype (float32 with 16-bit x)
        The statistics used (the batch's, or the running ones in eval) and
        1/√(var + eps): what ``batch_norm_backward`` takes.

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64 (or of one 16-bit
        storage dtype for x, weight and bias, with float32 running statistics), arrays of
        different dtypes in one call, or an ``out`` that is neither an array nor a tuple of the
        results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> running_mean, running_var = np.zeros(2), np.ones(2)
    >>> y, save_mean, save_rstd = mk.batch_norm(x, running_mean, running_var, training=True)
    >>> y.round(4), save_mean, running_mean, running_var
    (array([[-1., -1.],
           [ 1.,  1.]]), array([ 2., 20.]), array([0.2, 2. ]), array([ 1.1, 20.9]))
    """
    where = "batch_norm()"
    half = isinstance(x, np.ndarray) and x.dtype.itemsize == 2
    if half:            # 16-bit storage; the running statistics stay float32
        dtype = V.storage_dtype(where, x=x, weight=weight, bias=bias,
                                optional=("weight", "bias"))
        _float32_stats(where, dtype, "kept", running_mean=running_mean,
                       running_var=running_var)
    else:
        dtype = V.float_dtype(where, x=x, running_mean=running_mean, running_var=running_var,
                              weight=weight, bias=bias,
                              optional=("running_mean", "running_var", "weight", "bias"))
    stats_dtype = _F32 if half else dtype
    N, C, S = _bn_layout(where, x)
    for name, a in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        V.shape_is(where, name, a, (C,), "one per channel")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{where}: running_mean and running_var must be given together")
    eps = _eps(where, eps)
    training = bool(training)
    if not training and running_mean is None:
        raise ValueError(f"{where}: eval mode (training=False) needs running_mean and "
                         f"running_var; expected arrays, or training=True")
    if training and N * S <= 1:
        raise ValueError(f"{where}: training needs more than 1 value per channel; x has "
                         f"shape {x.shape}")
    factor = 0.0
    if training and running_mean is not None:
        for name, a in (("running_mean", running_mean), ("running_var", running_var)):
            if not (a.flags.writeable and a.flags.c_contiguous and a.flags.aligned
                    and a.dtype == stats_dtype):
                raise ValueError(f"{where}: {name} is updated in place in training; expected "
                                 f"a writeable C-contiguous {stats_dtype} array")
        if momentum is None:
            if isinstance(num_batches_tracked, bool) or \
                    not isinstance(num_batches_tracked, (int, np.integer)) or \
                    num_batches_tracked < 1:
                raise ValueError(f"{where}: momentum=None (cumulative average) needs "
                                 f"num_batches_tracked, the number of batches including this "
                                 f"one; got {num_batches_tracked!r}")
            factor = 1.0 / int(num_batches_tracked)
        else:
            factor = V.number(where, "momentum", momentum, low=0.0, high=1.0)
    if half:
        return _half_batch_norm(where, x, running_mean, running_var, weight, bias, training,
                                factor, eps, out, dtype, N, C, S)
    y, save_mean, save_rstd = V.outputs(where, out, ("y", "save_mean", "save_rstd"),
                                        (x.shape, (C,), (C,)), dtype,
                                        (x, running_mean, running_var, weight, bias))
    if training:        # updated in place: the arrays themselves (checked above)
        rm, rv = running_mean, running_var
    else:               # read only
        rm, rv = _c(running_mean, dtype), _c(running_var, dtype)
    K._norm.batch_norm(V.c_array(x, dtype), rm, rv, _c(weight, dtype), _c(bias, dtype), y,
                       save_mean, save_rstd, N, C, S, training, factor, eps)
    return y, save_mean, save_rstd


def batch_norm_backward(grad_out: np.ndarray, x: np.ndarray, save_mean: np.ndarray,
                        save_rstd: np.ndarray, weight: Optional[np.ndarray] = None,
                        training: bool = True, *, has_bias: Optional[bool] = None, out=None
                        ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients of ``batch_norm``, with x̂ = (x − save_mean)·save_rstd and g = grad_out::

        training: grad_x = γ·rstd·(g − mean(g) − x̂·mean(g·x̂))   (means per channel)
        eval:     grad_x = γ·rstd·g                             (statistics are constants)
        grad_weight = Σ g·x̂,  grad_bias = Σ g                   (per channel)

    Parameters
    ----------
    grad_out, x : ndarray of shape (N, C) or (N, C, *spatial)
        float32 or float64, or 16-bit storage (bfloat16 of ml_dtypes, or float16; weight of
        the same dtype): computed as float32 computes, grad_x rounded once to that dtype,
        grad_weight and grad_bias float32 (sums over every sample, the float32 kernel's bit
        for bit).
    save_mean, save_rstd : ndarray of shape (C,)
        As ``batch_norm`` returned them (any layout; float32 with 16-bit x).
    weight : ndarray of shape (C,), optional
    training : bool, default True
        Whether the forward used the batch's statistics.
    has_bias : bool, optional
        Whether to compute grad_bias (default: whether there is a weight).
    out : ndarray, or tuple (grad_x, grad_weight, grad_bias) of ndarrays or None, optional

    Returns
    -------
    grad_x : ndarray, the shape of x
    grad_weight, grad_bias : ndarray of shape (C,), or None
        In x's dtype (float32 with 16-bit x).

    Raises
    ------
    TypeError
        An array argument that is not an ndarray of float32 or float64 (or of one 16-bit
        storage dtype for grad_out, x and weight, with float32 save_mean and save_rstd),
        arrays of different dtypes in one call, or an ``out`` that is neither an array nor a
        tuple of the results.
    ValueError
        Shapes that do not match, a bad hyperparameter, or an ``out`` array that is
        read-only, not C-contiguous, of the wrong shape or dtype, or overlapping an input or
        another output. Nothing is written when it raises.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> y, save_mean, save_rstd = mk.batch_norm(x, None, None, training=True)
    >>> gx, gw, gb = mk.batch_norm_backward(np.ones_like(x), x, save_mean, save_rstd,
    ...                                     np.ones(2))
    >>> gw, gb
    (array([0., 0.]), array([2., 2.]))
    """
    where = "batch_norm_backward()"
    if isinstance(x, np.ndarray) and x.dtype.itemsize == 2:
        # 16-bit storage; the saved statistics are float32, as the forward returned them
        dtype = V.storage_dtype(where, grad_out=grad_out, x=x, weight=weight,
                                optional=("weight",))
        _float32_stats(where, dtype, "returned", save_mean=save_mean, save_rstd=save_rstd)
    else:
        dtype = V.float_dtype(where, grad_out=grad_out, x=x, save_mean=save_mean,
                              save_rstd=save_rstd, weight=weight, optional=("weight",))
    N, C, S = _bn_layout(where, x)
    V.shape_is(where, "grad_out", grad_out, x.shape, "the shape of x")
    for name, a in (("save_mean", save_mean), ("save_rstd", save_rstd), ("weight", weight)):
        V.shape_is(where, name, a, (C,), "one per channel")
    has_bias = weight is not None if has_bias is None else bool(has_bias)
    if dtype.itemsize == 2:
        return _half_batch_norm_backward(where, grad_out, x, save_mean, save_rstd, weight,
                                         bool(training), has_bias, out, dtype, N, C, S)
    gx, gw, gb = V.outputs(where, out, ("grad_x", "grad_weight", "grad_bias"),
                           (x.shape, (C,) if weight is not None else None,
                            (C,) if has_bias else None),
                           dtype, (grad_out, x, save_mean, save_rstd, weight))
    K._norm.batch_norm_backward(V.c_array(grad_out, dtype), V.c_array(x, dtype),
                                V.c_array(save_mean, dtype), V.c_array(save_rstd, dtype),
                                _c(weight, dtype), gx, gw, gb, N, C, S, bool(training))
    return gx, gw, gb
