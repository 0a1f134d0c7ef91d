"""Fused kernels: operations computed together so that a large intermediate never exists.

``linear_cross_entropy(x, weight, target, bias)`` is ``cross_entropy(linear(x, weight, bias),
target)`` -- a language model's output layer and loss -- computed in chunks of rows, so the
(N, num_classes) logits (512 MiB for 4096 rows and 32k classes in float32) are never stored;
``linear_cross_entropy_backward`` gives its gradients the same way, and
``linear_cross_entropy_with_grad`` both from one set of logits. Semantics (reductions,
``ignore_index``, ``label_smoothing``) are ``cross_entropy``'s. Kernels: ``mlkernels/_loss.pyx``
(``linear_cross_entropy_chunks``, beside the cross-entropy row functions it reuses).
"""
from __future__ import annotations

import threading
from typing import Optional, Tuple, Union

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads
from .loss import REDUCTIONS, _grad_out

__all__ = ["linear_cross_entropy", "linear_cross_entropy_backward",
           "linear_cross_entropy_with_grad", "LCE_CHUNK_BYTES", "LCE_BACKWARD_CHUNK_BYTES"]


def _integer_target(where, target):
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu":
        raise TypeError(f"{where}: target must be an integer array of class indices, got "
                        f"{V._describe(target)}; expected int64 (or another integer dtype)")


def _class_indices(where, target, C, ignore_index, classes):
    """target as a flat, aligned int64 array, every value in [0, C) or ignore_index."""
    if target.dtype.kind == "u" and target.size and target.max() > np.iinfo(np.int64).max:
        # (converting would wrap it to a negative index -- perhaps ignore_index itself)
        raise ValueError(f"{where}: target holds {target.max()}, outside [0, {C}) ({classes})")
    # an aligned int64 copy unless target already is one (the kernel reads int64 words: a
    # misaligned target, e.g. a view into a byte buffer, must not reach it)
    t = V.c_array(np.asarray(target), np.dtype(np.int64)).reshape(-1)
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        raise ValueError(f"{where}: target holds {t[bad][0]}, outside [0, {C}) ({classes}) and "
                         f"not ignore_index={ignore_index}")
    return t


#: The logits of one chunk of rows, in bytes: the forward's (32 MiB, our L3: 256 rows of 32k
#: float32 classes) and the backward's (128 MiB: 1024 rows). The backward's last product,
#: grad_x = dz·W for the chunk's rows, is a long sum (over the classes) into a small block, and
#: OpenBLAS ran it at a third of its speed for 256 rows (10-20 GFLOP/s against 48-63 for 1024
#: rows, N = 4096, d = 768, V = 32k): docs/kernels/linear_cross_entropy.md.
LCE_CHUNK_BYTES = 32 * 2**20
LCE_BACKWARD_CHUNK_BYTES = 128 * 2**20

#: scratch arrays (a chunk's logits, per-row losses and scales) up to this size are kept for
#: the calling Python thread's next call: a training loop's steady state then allocates nothing
KEEP_SCRATCH_BYTES = 32 * 2**20
_kept = threading.local()


def _scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialized array: the one of this name the calling thread kept from its last call
    when shape and dtype match, else a new one (kept in turn when small enough). Never
    returned to the caller: the kernels only write into it."""
    kept = _kept.__dict__
    a = kept.get(name)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = np.empty(shape, dtype)
        if a.nbytes <= KEEP_SCRATCH_BYTES:
            kept[name] = a
    return a


def _lce_layout(where, x, weight, target, bias, reduction, label_smoothing, ignore_index,
                chunk_rows, chunk_bytes=LCE_CHUNK_BYTES):
    dtype = V.float_dtype(where, x=x, weight=weight, bias=bias, optional=("bias",))
    V.choice(where, "reduction", reduction, REDUCTIONS)
    eps = V.number(where, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    ignore_index = V.integer(where, "ignore_index", ignore_index)
    if weight.ndim != 2:
        raise ValueError(f"{where}: weight has shape {weight.shape}; expected 2-d "
                         f"(num_classes, in_features)")
    n_classes, in_features = weight.shape
    if x.ndim < 1 or x.shape[-1] != in_features:
        raise ValueError(f"{where}: x has shape {x.shape} but weight has shape {weight.shape}; "
                         f"expected x of shape (..., in_features) = (..., {in_features})")
    V.shape_is(where, "bias", bias, (n_classes,), "(num_classes,)")
    V.blas_dim(where, "num_classes", n_classes)
    V.blas_dim(where, "in_features", in_features)
    _integer_target(where, target)
    if target.shape != x.shape[:-1]:
        raise ValueError(f"{where}: target has shape {target.shape} but x has shape {x.shape}; "
                         f"expected target of shape x.shape[:-1] = {x.shape[:-1]}")
    t = _class_indices(where, target, n_classes, ignore_index, "the rows of weight")
    if chunk_rows is None:
        chunk_rows = max(1, chunk_bytes // max(1, n_classes * dtype.itemsize))
    else:
        chunk_rows = V.integer(where, "chunk_rows", chunk_rows, low=1,
                               expected="an int >= 1 or None")
    rows = t.size
    x2 = V.c_array(x, dtype).reshape(rows, in_features)
    b = None if bias is None else V.c_array(bias, dtype)
    return dtype, eps, int(ignore_index), t, x2, V.c_array(weight, dtype), b, \
        min(int(chunk_rows), max(rows, 1))


def linear_cross_entropy(x: np.ndarray, weight: np.ndarray, target: np.ndarray,
                         bias: Optional[np.ndarray] = None, *, reduction: str = "mean",
                         ignore_index: int = -100, label_smoothing: float = 0.0,
                         chunk_rows: Optional[int] = None) -> Union[np.floating, np.ndarray]:
    """``cross_entropy(linear(x, weight, bias), target)`` without the logits in memory.

    The rows of x go through in chunks: per chunk, one gemm makes its logits in a scratch
    buffer of ``chunk_rows`` × num_classes, one pass over it (threads over rows) gives each
    row's loss. For a language model's head (N = 4096 rows, 32k classes, float32) the logits
    would take 512 MiB; the chunk takes ``LCE_CHUNK_BYTES`` (32 MiB).

    Parameters
    ----------
    x : array (..., in_features), float32 or float64: the rows (e.g. the last hidden states)
    weight : array (num_classes, in_features): the output layer (e.g. a tied embedding)
    target : integer array of shape x.shape[:-1], class indices in [0, num_classes) or
        ``ignore_index``
    bias : array (num_classes,), optional
    reduction : "mean" (over the targets not ignored; NaN if all are), "sum" or "none"
    ignore_index : int, targets equal to it contribute 0 and are not counted
    label_smoothing : float in [0, 1], as ``cross_entropy``
    chunk_rows : int, optional
        Rows per chunk (default: as many as fill LCE_CHUNK_BYTES of logits).

    Returns
    -------
    loss : NumPy scalar of x's dtype, or an array of target's shape for "none".
        For 2-d x this equals ``cross_entropy(linear(x, weight, bias), target, ...)``; for
        x (..., in_features) it is that of the rows flattened (class dimension last).

    Raises
    ------
    TypeError
        non-float arrays or mixed dtypes; target not an integer array.
    ValueError
        mismatched shapes; a target outside [0, num_classes) that is not ignore_index; bad
        reduction, label_smoothing or chunk_rows.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> rng = np.random.default_rng(0)
    >>> x, W = rng.standard_normal((8, 4)), rng.standard_normal((10, 4))
    >>> t = rng.integers(0, 10, 8)
    >>> bool(np.isclose(mk.linear_cross_entropy(x, W, t), mk.cross_entropy(mk.linear(x, W), t)))
    True
    """
    where = "linear_cross_entropy()"
    dtype, eps, ignore, t, x2, w, b, chunk = _lce_layout(
        where, x, weight, target, bias, reduction, label_smoothing, ignore_index, chunk_rows)
    losses = _scratch("losses", (t.size,), np.dtype(np.float64))
    scratch = _scratch("logits", (chunk if t.size else 0, w.shape[0]), dtype)
    K._loss.linear_cross_entropy_chunks(x2, w, b, t, losses, None, None, None, None, scratch,
                                        ignore, eps, get_num_threads())
    return _reduce_losses(losses, dtype, reduction, target.shape,
                          int(np.count_nonzero(t != ignore)))


def linear_cross_entropy_backward(grad_out, x: np.ndarray, weight: np.ndarray,
                                  target: np.ndarray, bias: Optional[np.ndarray] = None, *,
                                  reduction: str = "mean", ignore_index: int = -100,
                                  label_smoothing: float = 0.0, chunk_rows: Optional[int] = None,
                                  out: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray],
                                                      Optional[np.ndarray]]] = None
                                  ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of ``linear_cross_entropy`` with respect to x, weight and bias.

    The logits are recomputed chunk by chunk (one more gemm than a backward that kept them:
    the price of never holding them), turned into dz = (softmax − (1 − ε)·onehot − ε/C)·s in
    place, then ``grad_x = dz·weight`` for the chunk's rows and ``grad_weight += dzᵀ·x``.

    Parameters
    ----------
    grad_out : number or 0-d array (reduced loss), or array of target's shape ("none")
    x, weight, target, bias, reduction, ignore_index, label_smoothing : the forward's
    chunk_rows : int, optional
        Rows per chunk (default: as many as fill LCE_BACKWARD_CHUNK_BYTES of logits).
    out : tuple (grad_x, grad_weight, grad_bias) of arrays or None, optional
        Where to write the gradients (overwritten); grad_bias must be None without a bias.

    Returns
    -------
    (grad_x, grad_weight, grad_bias) : shapes of x, weight and bias (grad_bias None when bias
        is None); float32 bias gradients are summed in double.

    Raises
    ------
    TypeError, ValueError
        as ``linear_cross_entropy``; a grad_out or ``out`` of the wrong shape or dtype.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> rng = np.random.default_rng(0)
    >>> x, W, b = rng.standard_normal((8, 4)), rng.standard_normal((10, 4)), np.zeros(10)
    >>> t = rng.integers(0, 10, 8)
    >>> gx, gW, gb = mk.linear_cross_entropy_backward(1.0, x, W, t, b)
    >>> dz = mk.cross_entropy_backward(1.0, mk.linear(x, W, b), t)
    >>> bool(np.allclose(gx, dz @ W) and np.allclose(gW, dz.T @ x) and np.allclose(gb, dz.sum(0)))
    True
    """
    return _lce_gradients("linear_cross_entropy_backward()", grad_out, x, weight, target, bias,
                          reduction, ignore_index, label_smoothing, chunk_rows, out, False)[1:]


def linear_cross_entropy_with_grad(x: np.ndarray, weight: np.ndarray, target: np.ndarray,
                                   bias: Optional[np.ndarray] = None, *, grad_out=1.0,
                                   reduction: str = "mean", ignore_index: int = -100,
                                   label_smoothing: float = 0.0,
                                   chunk_rows: Optional[int] = None,
                                   out: Optional[Tuple[Optional[np.ndarray],
                                                       Optional[np.ndarray],
                                                       Optional[np.ndarray]]] = None
                                   ) -> Tuple[Union[np.floating, np.ndarray], np.ndarray,
                                              np.ndarray, Optional[np.ndarray]]:
    """The loss and its gradients in one pass: ``linear_cross_entropy`` followed by
    ``linear_cross_entropy_backward(grad_out, ...)``, with the logits made once.

    The loss is the last operation of a language model, so its ``grad_out`` is known before
    the forward runs (1.0 for a mean loss). Given it, each chunk's logits serve both the loss
    and the gradients: three gemms in all, as ``linear`` + ``cross_entropy`` + their backwards
    (which keep the (N, V) logits), where the separate forward and backward take four (the
    backward remakes the logits).

    Parameters
    ----------
    x, weight, target, bias, reduction, ignore_index, label_smoothing : as
        ``linear_cross_entropy``
    chunk_rows : int, optional, as ``linear_cross_entropy_backward``
    grad_out : number or 0-d array (reduced loss), or array of target's shape ("none")
    out : tuple (grad_x, grad_weight, grad_bias), as ``linear_cross_entropy_backward``

    Returns
    -------
    (loss, grad_x, grad_weight, grad_bias) : the loss as ``linear_cross_entropy`` returns it,
        the gradients as ``linear_cross_entropy_backward`` does.

    Raises
    ------
    TypeError, ValueError
        as ``linear_cross_entropy_backward``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> rng = np.random.default_rng(0)
    >>> x, W = rng.standard_normal((8, 4)), rng.standard_normal((10, 4))
    >>> t = rng.integers(0, 10, 8)
    >>> loss, gx, gW, gb = mk.linear_cross_entropy_with_grad(x, W, t)
    >>> bool(np.isclose(loss, mk.linear_cross_entropy(x, W, t))), gb is None
    (True, True)
    """
    return _lce_gradients("linear_cross_entropy_with_grad()", grad_out, x, weight, target,
                          bias, reduction, ignore_index, label_smoothing, chunk_rows, out, True)


def _lce_gradients(where, grad_out, x, weight, target, bias, reduction, ignore_index,
                   label_smoothing, chunk_rows, out, want_loss):
    """(loss or None, grad_x, grad_weight, grad_bias): validated, then one kernel call."""
    dtype, eps, ignore, t, x2, w, b, chunk = _lce_layout(
        where, x, weight, target, bias, reduction, label_smoothing, ignore_index, chunk_rows,
        LCE_BACKWARD_CHUNK_BYTES)
    g = _grad_out(where, grad_out, dtype, target.shape, reduction)
    if out is None:
        out = (None, None, None)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError(f"{where}: out must be a tuple (grad_x, grad_weight, grad_bias) of "
                        f"arrays or None, got {type(out).__name__}")
    inputs = (x, weight, target, bias, g)
    gx = V.output(where, out[0], x.shape, dtype, inputs, name="out[0] (grad_x)")
    gw = V.output(where, out[1], weight.shape, dtype, inputs + (gx,), name="out[1] (grad_weight)")
    gb = None
    if bias is not None:
        gb = V.output(where, out[2], bias.shape, dtype, inputs + (gx, gw),
                      name="out[2] (grad_bias)")
    elif out[2] is not None:
        raise ValueError(f"{where}: out[2] (grad_bias) is given but bias is None; expected None")
    count = int(np.count_nonzero(t != ignore))
    if reduction == "none":
        scale = np.ascontiguousarray(g.astype(np.float64).reshape(-1))
    else:
        per = count if reduction == "mean" else 1
        scale = _scratch("scale", (t.size,), np.dtype(np.float64))
        scale.fill(float(g) / per if per else np.nan)
    losses = _scratch("losses", (t.size,), np.dtype(np.float64)) if want_loss else None
    acc = _scratch("acc", (w.shape[0],), np.dtype(np.float64)) if b is not None else None
    scratch = _scratch("logits", (chunk if t.size else 0, w.shape[0]), dtype)
    K._loss.linear_cross_entropy_chunks(x2, w, b, t, losses, scale, gx.reshape(x2.shape), gw,
                                        acc, scratch, ignore, eps, get_num_threads())
    if gb is not None:
        gb[...] = acc
    return (_reduce_losses(losses, dtype, reduction, target.shape, count) if want_loss
            else None), gx, gw, gb


def _reduce_losses(losses, dtype, reduction, shape, count):
    """Per-row losses (double) to the result of a loss with this reduction."""
    if reduction == "none":
        return losses.astype(dtype).reshape(shape)
    total = losses.sum()
    if reduction == "sum":
        return dtype.type(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(total / count if count else np.nan)
