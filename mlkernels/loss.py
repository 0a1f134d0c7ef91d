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


def _axis(where: str, x: np.ndarray, axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{where}: axis must be an int, got {type(axis).__name__}")
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{where}: axis {axis} is out of range for x of shape {x.shape}; "
                         f"expected -{max(x.ndim, 1)} <= axis < {max(x.ndim, 1)}")
    return int(axis) % x.ndim


def _rows(x: np.ndarray, axis: int, dtype) -> np.ndarray:
    """x with ``axis`` moved last, as C-contiguous rows (a copy only when needed)."""
    return V.c_array(np.moveaxis(x, axis, -1), dtype).reshape(-1, x.shape[axis]) \
        if x.shape[axis] else np.zeros((0, 0), dtype)


def _softmax(where, x, axis, out, log_):
    dtype = V.float_dtype(where, x=x)
    axis = _axis(where, x, axis)
    y = V.output(where, out, x.shape, dtype, inputs=(x,), inplace_ok=(x,))
    if x.size == 0:
        return y
    rows = _rows(x, axis, dtype)
    if axis == x.ndim - 1:
        target = y.reshape(rows.shape)
        K._loss.softmax_rows(rows, target, log_, get_num_threads())
    else:
        tmp = np.empty_like(rows)
        K._loss.softmax_rows(rows, tmp, log_, get_num_threads())
        y[...] = np.moveaxis(tmp.reshape(np.moveaxis(x, axis, -1).shape), -1, axis)
    return y


def softmax(x: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """e^x / Σ e^x along ``axis``, computed as e^(x − max) (no overflow for any logits)."""
    return _softmax("softmax()", x, axis, out, False)


def log_softmax(x: np.ndarray, axis: int = -1, *, out: Optional[np.ndarray] = None
                ) -> np.ndarray:
    """x − log Σ e^x along ``axis``, computed as x − max − log Σ e^(x − max)."""
    return _softmax("log_softmax()", x, axis, out, True)


def _softmax_backward(where, grad_out, y, axis, out, log_):
    dtype = V.float_dtype(where, grad_out=grad_out, y=y)
    axis = _axis(where, y, axis)
    V.shape_is(where, "grad_out", grad_out, y.shape, "the shape of y")
    gx = V.output(where, out, y.shape, dtype, inputs=(grad_out, y), inplace_ok=(grad_out,))
    if y.size == 0:
        return gx
    g_rows, y_rows = _rows(grad_out, axis, dtype), _rows(y, axis, dtype)
    res = np.empty_like(y_rows)
    K._loss.softmax_backward_rows(g_rows, y_rows, res, log_, get_num_threads())
    gx[...] = np.moveaxis(res.reshape(np.moveaxis(y, axis, -1).shape), -1, axis)
    return gx


def softmax_backward(grad_out: np.ndarray, y: np.ndarray, axis: int = -1, *,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_x = y·(grad_out − Σ grad_out·y), y = softmax(x) (the forward's output)."""
    return _softmax_backward("softmax_backward()", grad_out, y, axis, out, False)


def log_softmax_backward(grad_out: np.ndarray, y: np.ndarray, axis: int = -1, *,
                         out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_x = grad_out − e^y·Σ grad_out, y = log_softmax(x) (the forward's output)."""
    return _softmax_backward("log_softmax_backward()", grad_out, y, axis, out, True)


# ------------------------------------------------------------------ cross-entropy

def _ce_layout(where, logits, target, reduction, label_smoothing, ignore_index):
    dtype = V.float_dtype(where, logits=logits)
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
    t = V.c_array(np.asarray(target), np.dtype(np.int64)).reshape(-1)
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        raise ValueError(f"{where}: target holds {t[bad][0]}, outside [0, {C}) (the classes "
                         f"of logits) and not ignore_index={ignore_index}")
    axis = 0 if logits.ndim == 1 else 1
    rows = _rows(logits, axis, dtype) if C else np.zeros((t.size, 0), dtype)
    return dtype, eps, int(ignore_index), t, rows, expected


def cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                  label_smoothing: float = 0.0, ignore_index: int = -100
                  ) -> Union[np.floating, np.ndarray]:
    """Cross-entropy of integer class targets, log-softmax and NLL fused in one pass::

        loss_i = (1 − ε)·(−log p_i[t_i]) + ε·mean_c(−log p_i[c]),  p_i = softmax(logits_i)

    over logits (N, C) or (N, C, d1, ...) with target (N,) or (N, d1, ...). Targets equal
    to ``ignore_index`` contribute 0 and are not counted by "mean" (all ignored: NaN).
    """
    where = "cross_entropy()"
    dtype, eps, ignore, t, rows, shape = _ce_layout(where, logits, target, reduction,
                                                    label_smoothing, ignore_index)
    losses = np.empty(t.size)
    K._loss.cross_entropy_rows(rows, t, losses, ignore, eps, get_num_threads())
    if reduction == "none":
        return losses.astype(dtype).reshape(shape)
    total = losses.sum()
    if reduction == "sum":
        return dtype.type(total)
    count = int(np.count_nonzero(t != ignore))
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(total / count if count else np.nan)


def _grad_out(where, grad_out, dtype, shape, reduction):
    """grad_out as an array: a number (or 0-d array) for a reduced loss."""
    if reduction != "none" and isinstance(grad_out, numbers.Real) and \
            not isinstance(grad_out, bool):
        return np.full((), grad_out, dtype)
    V.float_dtype(where, grad_out=grad_out, **{"the loss's input": np.empty(0, dtype)})
    want = () if reduction != "none" else shape
    V.shape_is(where, "grad_out", grad_out, want,
               "a scalar for a reduced loss" if reduction != "none" else "the loss's shape")
    return V.c_array(grad_out, dtype)


def cross_entropy_backward(grad_out, logits: np.ndarray, target: np.ndarray,
                           reduction: str = "mean", label_smoothing: float = 0.0,
                           ignore_index: int = -100, *, out: Optional[np.ndarray] = None
                           ) -> np.ndarray:
    """dL/dlogits = (softmax(logits) − (1 − ε)·onehot(target) − ε/C)·grad_out (/count for
    "mean"), 0 for ignored targets; one pass over the logits."""
    where = "cross_entropy_backward()"
    dtype, eps, ignore, t, rows, shape = _ce_layout(where, logits, target, reduction,
                                                    label_smoothing, ignore_index)
    g = _grad_out(where, grad_out, dtype, shape, reduction)
    grad = V.output(where, out, logits.shape, dtype, inputs=(logits,))
    if reduction == "none":
        scale = g.astype(np.float64).reshape(-1)
    else:
        count = int(np.count_nonzero(t != ignore)) if reduction == "mean" else 1
        value = float(g) / count if count else np.nan
        scale = np.full(t.size, value)
    if logits.size == 0:
        return grad
    res = np.empty_like(rows)
    K._loss.cross_entropy_backward_rows(rows, t, np.ascontiguousarray(scale), res, ignore, eps,
                                        get_num_threads())
    axis = 0 if logits.ndim == 1 else 1
    grad[...] = np.moveaxis(res.reshape(np.moveaxis(logits, axis, -1).shape), -1, axis)
    return grad


# ------------------------------------------------------------------ MSE, BCE with logits

def _pair(where, input, target, reduction):
    dtype = V.float_dtype(where, input=input, target=target)
    V.choice(where, "reduction", reduction, REDUCTIONS)
    V.shape_is(where, "target", target, input.shape, "the shape of input")
    return dtype, V.c_array(input, dtype).reshape(-1), V.c_array(target, dtype).reshape(-1)


def _reduce(total, per, dtype, reduction, shape, n):
    if reduction == "none":
        return per.reshape(shape)
    if reduction == "sum":
        return dtype.type(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(total / n if n else np.nan)


def mse_loss(input: np.ndarray, target: np.ndarray, reduction: str = "mean"
             ) -> Union[np.floating, np.ndarray]:
    """(input − target)², reduced; the sum is accumulated in double."""
    dtype, x, t = _pair("mse_loss()", input, target, reduction)
    per = np.empty_like(x) if reduction == "none" else None
    total = K._loss.mse_sum(x, t, per)
    return _reduce(total, per, dtype, reduction, input.shape, x.size)


def _pair_backward(where, kernel, grad_out, input, target, reduction, out):
    dtype, x, t = _pair(where, input, target, reduction)
    g = _grad_out(where, grad_out, dtype, input.shape, reduction)
    res = V.output(where, out, input.shape, dtype, inputs=(input, target))
    scale = 1.0 / x.size if reduction == "mean" and x.size else 1.0
    kernel(x, t, g.reshape(-1) if g.ndim else g.reshape(1), scale, res.reshape(-1))
    return res


def mse_loss_backward(grad_out, input: np.ndarray, target: np.ndarray, reduction: str = "mean",
                      *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """dL/dinput = 2(input − target)·grad_out (/n for "mean")."""
    return _pair_backward("mse_loss_backward()", K._loss.mse_backward, grad_out, input, target,
                          reduction, out)


def binary_cross_entropy_with_logits(input: np.ndarray, target: np.ndarray,
                                     reduction: str = "mean"
                                     ) -> Union[np.floating, np.ndarray]:
    """−[t·log σ(x) + (1 − t)·log(1 − σ(x))], computed as (1 − t)·x + log(1 + e^−x) with
    log(1 + e^−x) = max(−x, 0) + log1p(e^−|x|): stable for any |x|."""
    dtype, x, t = _pair("binary_cross_entropy_with_logits()", input, target, reduction)
    per = np.empty_like(x) if reduction == "none" else None
    total = K._loss.bce_logits_sum(x, t, per)
    return _reduce(total, per, dtype, reduction, input.shape, x.size)


def binary_cross_entropy_with_logits_backward(grad_out, input: np.ndarray, target: np.ndarray,
                                              reduction: str = "mean", *,
                                              out: Optional[np.ndarray] = None) -> np.ndarray:
    """dL/dinput = (σ(input) − target)·grad_out (/n for "mean")."""
    return _pair_backward("binary_cross_entropy_with_logits_backward()",
                          K._loss.bce_logits_backward, grad_out, input, target, reduction, out)
