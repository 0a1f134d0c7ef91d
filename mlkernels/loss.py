"""Softmax, log-softmax and losses, as in ``torch.nn.functional``.

Reductions are "mean", "sum" or "none"; a reduced loss is returned as a NumPy scalar of the
input's dtype. Each backward takes ``grad_out`` (a number or 0-d array for a reduced loss,
an array of the loss's shape for "none") and overwrites its result (or ``out``).
Kernels: ``mlkernels/_loss.pyx``.
"""
from __future__ import annotations

from math import prod
from typing import Optional, Tuple, Union

import numbers
import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
           "cross_entropy", "cross_entropy_backward", "mse_loss", "mse_loss_backward",
           "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward"]

REDUCTIONS = ("mean", "sum", "none")
_INT64, _FLOAT64 = np.dtype(np.int64), np.dtype(np.float64)
_EMPTY = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}   # for messages


def _axis(where: str, x: np.ndarray, axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{where}: axis must be an int, got {type(axis).__name__}")
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{where}: axis {axis} is out of range for x of shape {x.shape}; "
                         f"expected -{max(x.ndim, 1)} <= axis < {max(x.ndim, 1)}")
    return int(axis) % x.ndim


def _rows(x: np.ndarray, axis: int, dtype) -> np.ndarray:
    """x with ``axis`` moved last, as C-contiguous memory (a copy only when needed): the rows
    the kernels take."""
    if axis == x.ndim - 1:
        return V.c_array(x, dtype)
    return V.c_array(np.moveaxis(x, axis, -1), dtype)


# 16-bit storage (bfloat16 of ml_dtypes, float16): the float32 row kernels on rows widened in
# cache (_loss.half_rows), each output value rounded once: the float32 result, rounded.
# Losses are float32 (and their gradients' grad_out), never rounded to 16 bits.
_HALF_SOFTMAX, _HALF_SOFTMAX_BACKWARD, _HALF_CE, _HALF_CE_BACKWARD = 0, 1, 2, 3


def _softmax(where, x, axis, out, log_):
    dtype = V.storage_dtype(where, x=x)
    axis = _axis(where, x, axis)
    y = V.output(where, out, x.shape, dtype, inputs=(x,), inplace_ok=(x,))
    if x.size == 0:
        return y
    C = x.shape[axis]
    rows = _rows(x, axis, dtype)
    dst = y if axis == x.ndim - 1 else np.empty_like(rows)
    if dtype.itemsize == 2:
        K._loss.half_rows(_HALF_SOFTMAX, V.storage_kind(dtype), rows, None, dst, None, None,
                          None, 0.0, x.size // C, C, log_, 0, 0.0, get_num_threads())
    else:
        K._loss.softmax_rows(rows, dst, x.size // C, C, log_, get_num_threads())
    if dst is not y:
        y[...] = np.moveaxis(dst, -1, axis)
    return y


def softmax(x: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Softmax along ``axis``: e^x / Σ e^x, computed as e^(x − max) (no overflow for any
    logits; a row of all −inf gives NaN, as torch).

    Parameters
    ----------
    x : numpy.ndarray
        The logits, float32 or float64, any shape with at least one dimension, any strides;
        or 16-bit storage (bfloat16 of ml_dtypes, float16): the float32 result, rounded once.
    axis : int, default -1
        The axis to normalize over.
    out : numpy.ndarray, optional
        Where to write the result: C-contiguous, of x's shape and dtype; it may be x itself.

    Returns
    -------
    numpy.ndarray
        The probabilities, of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        If x is not a float32/float64 array.
    ValueError
        If ``axis`` is out of range, or ``out`` has the wrong shape or dtype, is read-only,
        not C-contiguous or overlaps x without being x.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.softmax(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    return _softmax("softmax()", x, axis, out, False)


def log_softmax(x: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None
                ) -> np.ndarray:
    """Log-softmax along ``axis``: x − log Σ e^x, computed as (x − max) − log Σ e^(x − max)
    (no overflow, and no log of a rounded probability).

    Parameters
    ----------
    x : numpy.ndarray
        The logits, float32 or float64, any shape with at least one dimension, any strides;
        or 16-bit storage (bfloat16 of ml_dtypes, float16): the float32 result, rounded once.
    axis : int, default -1
        The axis to normalize over.
    out : numpy.ndarray, optional
        Where to write the result: C-contiguous, of x's shape and dtype; it may be x itself.

    Returns
    -------
    numpy.ndarray
        The log-probabilities, of x's shape and dtype (``out`` when given).

    Raises
    ------
    TypeError
        If x is not a float32/float64 array.
    ValueError
        If ``axis`` is out of range, or ``out`` is unusable (see ``softmax``).

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> np.exp(mk.log_softmax(np.array([1e4, 1e4])))     # no overflow
    array([0.5, 0.5])
    """
    return _softmax("log_softmax()", x, axis, out, True)


def _softmax_backward(where, grad_out, y, axis, out, log_):
    dtype = V.storage_dtype(where, grad_out=grad_out, y=y)
    axis = _axis(where, y, axis)
    V.shape_is(where, "grad_out", grad_out, y.shape, "the shape of y")
    gx = V.output(where, out, y.shape, dtype, inputs=(grad_out, y), inplace_ok=(grad_out,))
    if y.size == 0:
        return gx
    C = y.shape[axis]
    g_rows, y_rows = _rows(grad_out, axis, dtype), _rows(y, axis, dtype)
    # (gx may be grad_out itself: each row is read, then written)
    res = gx if axis == y.ndim - 1 else np.empty_like(y_rows)
    if dtype.itemsize == 2:
        K._loss.half_rows(_HALF_SOFTMAX_BACKWARD, V.storage_kind(dtype), g_rows, y_rows, res,
                          None, None, None, 0.0, y.size // C, C, log_, 0, 0.0,
                          get_num_threads())
    else:
        K._loss.softmax_backward_rows(g_rows, y_rows, res, y.size // C, C, log_,
                                      get_num_threads())
    if res is not gx:
        gx[...] = np.moveaxis(res, -1, axis)
    return gx


def softmax_backward(grad_out: np.ndarray, y: np.ndarray, axis: int = -1, *,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """The gradient of ``softmax``: grad_x = y·(grad_out − Σ grad_out·y) along ``axis``.

    Parameters
    ----------
    grad_out : numpy.ndarray
        dL/dy, of y's shape and dtype.
    y : numpy.ndarray
        The forward's output, ``softmax(x, axis)`` (not x).
    axis : int, default -1
        The forward's axis.
    out : numpy.ndarray, optional
        Where to write grad_x (C-contiguous, y's shape and dtype; it may be grad_out itself).

    Returns
    -------
    numpy.ndarray
        grad_x = dL/dx, of y's shape and dtype.

    Raises
    ------
    TypeError
        If an array is not float32/float64, or they mix the two.
    ValueError
        If the shapes differ, ``axis`` is out of range, or ``out`` is unusable.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> y = mk.softmax(np.array([0.0, 0.0]))
    >>> mk.softmax_backward(np.array([1.0, 0.0]), y)
    array([ 0.25, -0.25])
    """
    return _softmax_backward("softmax_backward()", grad_out, y, axis, out, False)


def log_softmax_backward(grad_out: np.ndarray, y: np.ndarray, axis: int = -1, *,
                         out: Optional[np.ndarray] = None) -> np.ndarray:
    """The gradient of ``log_softmax``: grad_x = grad_out − e^y·Σ grad_out along ``axis``.

    Parameters
    ----------
    grad_out : numpy.ndarray
        dL/dy, of y's shape and dtype.
    y : numpy.ndarray
        The forward's output, ``log_softmax(x, axis)`` (not x).
    axis : int, default -1
        The forward's axis.
    out : numpy.ndarray, optional
        Where to write grad_x (C-contiguous, y's shape and dtype; it may be grad_out itself).

    Returns
    -------
    numpy.ndarray
        grad_x = dL/dx, of y's shape and dtype.

    Raises
    ------
    TypeError
        If an array is not float32/float64, or they mix the two.
    ValueError
        If the shapes differ, ``axis`` is out of range, or ``out`` is unusable.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> y = mk.log_softmax(np.array([0.0, 0.0]))
    >>> mk.log_softmax_backward(np.array([1.0, 0.0]), y)
    array([ 0.5, -0.5])
    """
    return _softmax_backward("log_softmax_backward()", grad_out, y, axis, out, True)


# ------------------------------------------------------------------ cross-entropy

def _ce_layout(where, logits, target, reduction, label_smoothing, ignore_index):
    dtype = V.storage_dtype(where, logits=logits)
    V.choice(where, "reduction", reduction, REDUCTIONS)
    eps = V.number(where, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{where}: ignore_index must be an int, got {type(ignore_index).__name__}")
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu":
        raise TypeError(f"{where}: target must be an integer array of class indices, got "
                        f"{V._describe(target)}; expected int64 (or another integer dtype)")
    if logits.ndim < 1 or logits.ndim == 1 and target.ndim != 0:
        raise ValueError(f"{where}: logits has shape {logits.shape}; expected (N, C) or "
                         f"(N, C, d1, ...) (or (C,) with a 0-d target)")
    if logits.ndim == 1:
        expected = ()
    else:
        expected = (logits.shape[0],) + logits.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{where}: target has shape {target.shape} but logits has shape "
                         f"{logits.shape}; expected target of shape {expected}")
    C = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    if target.dtype.kind == "u" and target.size and target.max() > np.iinfo(np.int64).max:
        # (converting would wrap it to a negative index -- perhaps ignore_index itself)
        raise ValueError(f"{where}: target holds {target.max()}, outside [0, {C}) (the classes "
                         f"of logits)")
    # an aligned int64 copy unless target already is one (the kernel reads int64 words: a
    # misaligned target, e.g. a view into a byte buffer, must not reach it)
    t = V.c_array(target, _INT64)
    bad = K._loss.check_targets(t, C, ignore_index)
    if bad >= 0:
        raise ValueError(f"{where}: target holds {t.reshape(-1)[bad]}, outside [0, {C}) (the "
                         f"classes of logits) and not ignore_index={ignore_index}")
    axis = 0 if logits.ndim == 1 else 1
    rows = _rows(logits, axis, dtype)
    return dtype, eps, int(ignore_index), t, rows, expected, C


def cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int = -100
                  ) -> Union[np.floating, np.ndarray]:
    """Cross-entropy of integer class targets, log-softmax and NLL fused in one pass::

        loss_i = (1 − ε)·(−log p_i[t_i]) + ε·mean_c(−log p_i[c]),  p_i = softmax(logits_i)

    over logits (N, C) or (N, C, d1, ...) with target (N,) or (N, d1, ...). Targets equal
    to ``ignore_index`` contribute 0 and are not counted by "mean" (all ignored: NaN).

    Parameters
    ----------
    logits : numpy.ndarray
        (N, C), (N, C, d1, ...) or (C,) (with a 0-d target), float32 or float64, or
        bfloat16 (ml_dtypes) / float16 storage: the loss is then float32.
    target : numpy.ndarray
        Integer class indices in [0, C) (or ``ignore_index``), of shape (N,), (N, d1, ...)
        or () to match logits; any integer dtype.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
    ignore_index : int, default -100

    Returns
    -------
    numpy.float32 or numpy.float64 or numpy.ndarray
        The loss, a scalar of the logits' dtype, or per target for ``reduction="none"``.

    Raises
    ------
    TypeError
        If logits is not a float array, or target not an integer array.
    ValueError
        If the shapes do not match, a target is outside [0, C) and not ``ignore_index``
        (named in the message), or ``reduction``/``label_smoothing`` is invalid.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> logits = np.log(np.array([[1.0, 3.0], [1.0, 1.0]]))
    >>> float(mk.cross_entropy(logits, np.array([1, 0])))     # (−log .75 − log .5) / 2
    0.4904146265...
    """
    where = "cross_entropy()"
    dtype, eps, ignore, t, rows, shape, C = _ce_layout(where, logits, target, reduction,
                                                       label_smoothing, ignore_index)
    losses = np.empty(t.size) if reduction == "none" else None
    if dtype.itemsize == 2:         # 16-bit logits: the loss in float32
        total = K._loss.half_rows(_HALF_CE, V.storage_kind(dtype), rows, None, None, t, losses,
                                  None, 0.0, t.size, C, False, ignore, eps, get_num_threads())
        dtype = V.compute_dtype(dtype)
    else:
        total = K._loss.cross_entropy_rows(rows, t, losses, t.size, C, ignore, eps,
                                           get_num_threads())
    if reduction == "none":
        return losses.astype(dtype).reshape(shape)
    if reduction == "sum":
        return dtype.type(total)
    count = K._loss.count_not_ignored(t, ignore)
    return dtype.type(total / count if count else np.nan)


def _grad_out(where, grad_out, dtype, shape, reduction):
    """grad_out as an array: a number (or 0-d array) for a reduced loss."""
    if reduction != "none" and isinstance(grad_out, numbers.Real) and \
            not isinstance(grad_out, bool):
        return np.full((), grad_out, dtype)
    V.float_dtype(where, grad_out=grad_out, **{"the loss's input": _EMPTY[dtype]})
    want = () if reduction != "none" else shape
    V.shape_is(where, "grad_out", grad_out, want,
               "a scalar for a reduced loss" if reduction != "none" else "the loss's shape")
    return V.c_array(grad_out, dtype)


def cross_entropy_backward(grad_out, logits: np.ndarray, target: np.ndarray,
                           reduction: str = "mean", label_smoothing: float = 0.0,
                           ignore_index: int = -100, *, out: Optional[np.ndarray] = None
                           ) -> np.ndarray:
    """The gradient of ``cross_entropy`` with respect to the logits, in one pass over them:
    dL/dlogits = (softmax(logits) − (1 − ε)·onehot(target) − ε/C)·grad_out (/count for
    "mean"), 0 for ignored targets.

    Parameters
    ----------
    grad_out : float or numpy.ndarray
        dL/dloss: a number or 0-d array for a reduced loss, an array of the loss's shape for
        ``reduction="none"``.
    logits, target, reduction, label_smoothing, ignore_index
        As given to ``cross_entropy``.
    out : numpy.ndarray, optional
        Where to write the gradient (C-contiguous, logits' shape and dtype).

    Returns
    -------
    numpy.ndarray
        dL/dlogits, of the logits' shape and dtype (``out`` when given).

    Raises
    ------
    TypeError, ValueError
        As ``cross_entropy``; also for a grad_out of the wrong shape or an unusable ``out``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> logits = np.log(np.array([[1.0, 3.0]]))
    >>> mk.cross_entropy_backward(1.0, logits, np.array([1]))      # softmax − onehot
    array([[ 0.25, -0.25]])
    """
    where = "cross_entropy_backward()"
    dtype, eps, ignore, t, rows, shape, C = _ce_layout(where, logits, target, reduction,
                                                       label_smoothing, ignore_index)
    g = _grad_out(where, grad_out, V.compute_dtype(dtype), shape, reduction)
    grad = V.output(where, out, logits.shape, dtype, inputs=(logits,))
    scales, scale = None, 0.0
    if reduction == "none":
        scales = V.c_array(g, _FLOAT64)
    else:
        count = K._loss.count_not_ignored(t, ignore) if reduction == "mean" else 1
        scale = float(g) / count if count else np.nan
    if logits.size == 0:
        return grad
    kind = V.storage_kind(dtype) if dtype.itemsize == 2 else 0

    def kernel(dst):
        if kind:
            K._loss.half_rows(_HALF_CE_BACKWARD, kind, rows, None, dst, t, None, scales, scale,
                              t.size, C, False, ignore, eps, get_num_threads())
        else:
            K._loss.cross_entropy_backward_rows(rows, t, scales, scale, dst, t.size, C, ignore,
                                                eps, get_num_threads())
    if logits.ndim <= 2:        # the classes are the last axis: rows straight into grad
        kernel(grad)
        return grad
    res = np.empty_like(rows)
    kernel(res)
    grad[...] = np.moveaxis(res, -1, 1)
    return grad


# ------------------------------------------------------------------ MSE, BCE with logits

def _pair(where, input, target, reduction):
    dtype = V.float_dtype(where, input=input, target=target)
    V.choice(where, "reduction", reduction, REDUCTIONS)
    V.shape_is(where, "target", target, input.shape, "the shape of input")
    return dtype, V.c_array(input, dtype), V.c_array(target, dtype)


def _reduce(total, per, dtype, reduction, shape, n):
    if reduction == "none":
        return per.reshape(shape)
    if reduction == "sum":
        return dtype.type(total)
    return dtype.type(total / n if n else np.nan)


def mse_loss(input: np.ndarray, target: np.ndarray, reduction: str = "mean"
             ) -> Union[np.floating, np.ndarray]:
    """Mean squared error: (input − target)², reduced ("mean", "sum" or "none"); the sum is
    accumulated in double.

    Parameters
    ----------
    input, target : numpy.ndarray
        The same shape, float32 or float64 (one dtype).
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    numpy.float32 or numpy.float64 or numpy.ndarray
        A scalar of the inputs' dtype, or the per-element losses for ``reduction="none"``.

    Raises
    ------
    TypeError
        If an input is not a float array, or the dtypes differ.
    ValueError
        If the shapes differ or ``reduction`` is invalid.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> float(mk.mse_loss(np.array([1.0, 2.0]), np.array([0.0, 0.0])))
    2.5
    """
    dtype, x, t = _pair("mse_loss()", input, target, reduction)
    per = np.empty_like(x) if reduction == "none" else None
    total = K._loss.mse_sum(x, t, per, x.size)
    return _reduce(total, per, dtype, reduction, input.shape, x.size)


def _pair_backward(where, kernel, grad_out, input, target, reduction, out):
    dtype, x, t = _pair(where, input, target, reduction)
    g = _grad_out(where, grad_out, dtype, input.shape, reduction)
    res = V.output(where, out, input.shape, dtype, inputs=(input, target))
    scale = 1.0 / x.size if reduction == "mean" and x.size else 1.0
    kernel(x, t, g, scale, res, x.size)
    return res


def mse_loss_backward(grad_out, input: np.ndarray, target: np.ndarray, reduction: str = "mean",
                      *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The gradient of ``mse_loss``: dL/dinput = 2(input − target)·grad_out (/n for "mean").

    Parameters
    ----------
    grad_out : float or numpy.ndarray
        dL/dloss: a number (or 0-d array) for a reduced loss, input's shape for "none".
    input, target, reduction
        As given to ``mse_loss``.
    out : numpy.ndarray, optional
        Where to write the gradient (C-contiguous, input's shape and dtype).

    Returns
    -------
    numpy.ndarray
        dL/dinput, of input's shape and dtype.

    Raises
    ------
    TypeError, ValueError
        As ``mse_loss``; also for a grad_out of the wrong shape or an unusable ``out``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.mse_loss_backward(1.0, np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    array([1., 2.])
    """
    return _pair_backward("mse_loss_backward()", K._loss.mse_backward, grad_out, input, target,
                          reduction, out)


def binary_cross_entropy_with_logits(input: np.ndarray, target: np.ndarray,
                                     reduction: str = "mean"
                                     ) -> Union[np.floating, np.ndarray]:
    """−[t·log σ(x) + (1 − t)·log(1 − σ(x))], computed as (1 − t)·x + log(1 + e^−x) with
    log(1 + e^−x) = max(−x, 0) + log1p(e^−|x|): stable for any |x|.

    Parameters
    ----------
    input : numpy.ndarray
        The logits x, float32 or float64.
    target : numpy.ndarray
        Probabilities t in [0, 1], of input's shape and dtype.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    numpy.float32 or numpy.float64 or numpy.ndarray
        A scalar of the inputs' dtype, or the per-element losses for ``reduction="none"``.

    Raises
    ------
    TypeError
        If an input is not a float array, or the dtypes differ.
    ValueError
        If the shapes differ or ``reduction`` is invalid.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> float(mk.binary_cross_entropy_with_logits(np.array([0.0]), np.array([1.0])))  # log 2
    0.6931471805599453
    """
    dtype, x, t = _pair("binary_cross_entropy_with_logits()", input, target, reduction)
    per = np.empty_like(x) if reduction == "none" else None
    total = K._loss.bce_logits_sum(x, t, per, x.size)
    return _reduce(total, per, dtype, reduction, input.shape, x.size)


def binary_cross_entropy_with_logits_backward(grad_out, input: np.ndarray, target: np.ndarray,
                                              reduction: str = "mean", *,
                                              out: Optional[np.ndarray] = None) -> np.ndarray:
    """The gradient of ``binary_cross_entropy_with_logits``:
    dL/dinput = (σ(input) − target)·grad_out (/n for "mean").

    Parameters
    ----------
    grad_out : float or numpy.ndarray
        dL/dloss: a number (or 0-d array) for a reduced loss, input's shape for "none".
    input, target, reduction
        As given to ``binary_cross_entropy_with_logits``.
    out : numpy.ndarray, optional
        Where to write the gradient (C-contiguous, input's shape and dtype).

    Returns
    -------
    numpy.ndarray
        dL/dinput, of input's shape and dtype.

    Raises
    ------
    TypeError, ValueError
        As the forward; also for a grad_out of the wrong shape or an unusable ``out``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> mk.binary_cross_entropy_with_logits_backward(1.0, np.array([0.0]), np.array([1.0]))
    array([-0.5])
    """
    return _pair_backward("binary_cross_entropy_with_logits_backward()",
                          K._loss.bce_logits_backward, grad_out, input, target, reduction, out)
