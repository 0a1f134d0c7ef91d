"""Gradient clipping by total norm, as ``torch.nn.utils.clip_grad_norm_``, over NumPy arrays.

``clip_grad_norm_(grads, max_norm)`` computes the p-norm of all the gradients taken together
(in double, the same bits for any thread count), and if it exceeds ``max_norm`` multiplies
every gradient in place by ``max_norm / (total_norm + 1e-6)``. One reading pass over the
gradients, plus one scaling pass only when clipping. The optimizer classes of
``mlkernels.optim`` take ``max_grad_norm=`` and do the same inside their step, where the
scaling costs nothing: the fused step multiplies each gradient by the coefficient as it
reads it. Kernels: ``mlkernels/_clip.pyx``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads

__all__ = ["clip_grad_norm_", "get_total_norm"]

Arrays = Union[np.ndarray, Sequence[Optional[np.ndarray]]]

# the unit reductions of _clip.pyx (its enum Kind)
_SUM_SQUARES, _SUM_ABS, _MAX_ABS, _MIN_ABS, _COUNT_NONZERO, _SUM_POW = range(6)


class NonFiniteNormError(ValueError, RuntimeError):
    """The total norm is NaN or ±inf and ``error_if_nonfinite=True`` (torch raises a
    RuntimeError there; this is both a ValueError, like every bad input here, and a
    RuntimeError)."""


def _norm_type(where: str, norm_type: object) -> float:
    if isinstance(norm_type, str):
        try:
            norm_type = float(norm_type)          # "inf", as torch accepts
        except ValueError:
            raise ValueError(f"{where}: norm_type is {norm_type!r}; expected a number or "
                             f"'inf'") from None
    p = V.number(where, "norm_type", norm_type, finite=False)
    return p


def _grad_list(where: str, grads: object, writeable: bool) -> Tuple[List[np.ndarray], np.dtype]:
    """The arrays of ``grads`` (None entries dropped), all float32 or all float64."""
    if isinstance(grads, np.ndarray):
        grads = [grads]
    if not isinstance(grads, (list, tuple)):
        raise TypeError(f"{where}: grads must be an array or a list of arrays, got "
                        f"{type(grads).__name__}")
    arrays = [g for g in grads if g is not None]
    if not arrays:
        return [], np.dtype(np.float64)
    dtype = V.float_dtype(where, **{f"grads[{i}]": g for i, g in enumerate(grads)
                                    if g is not None})
    if writeable:
        for i, g in enumerate(grads):
            if g is not None and not g.flags.writeable:
                raise ValueError(f"{where}: grads[{i}] is read-only; expected writeable arrays "
                                 f"(they are scaled in place)")
    return arrays, dtype


def _plain(a: np.ndarray, dtype: np.dtype) -> bool:
    return a.flags.c_contiguous and a.flags.aligned and a.dtype == dtype


def _partials(arrays: List[np.ndarray], kind: int, p: float) -> List[float]:
    """Per-array partial results (Σ|x|^p, or max/min |x|, or #nonzero), in double, in order.
    Arrays of either float type may be mixed here (the optimizer's groups)."""
    result = np.empty(len(arrays))
    for is_double in (False, True):
        picked = [i for i, a in enumerate(arrays) if (a.dtype.itemsize == 8) == is_double]
        if not picked:
            continue
        dtype = np.dtype(np.float64 if is_double else np.float32)
        plain = [arrays[i] if _plain(arrays[i], dtype) else V.c_array(arrays[i], dtype)
                 for i in picked]
        part = np.empty(len(plain))
        K._clip.norm_partials(plain, is_double, kind, p, part, get_num_threads())
        result[picked] = part
    return result.tolist()


def _kind(p: float) -> int:
    return {2.0: _SUM_SQUARES, 1.0: _SUM_ABS, math.inf: _MAX_ABS, -math.inf: _MIN_ABS,
            0.0: _COUNT_NONZERO}.get(p, _SUM_POW)


def _total_norm(arrays: List[np.ndarray], p: float) -> float:
    """torch's total norm: the p-norm of the per-array p-norms, in double."""
    if not arrays:
        return 0.0
    kind = _kind(p)
    parts = _partials(arrays, kind, p)
    if kind == _MAX_ABS:
        return max(parts, key=lambda v: (v != v, v))      # NaN first, then the largest
    if kind == _MIN_ABS:
        return min(parts, key=lambda v: (v == v, v))      # NaN first, then the smallest
    if kind == _COUNT_NONZERO:
        return float(sum(1 for v in parts if v != 0))     # arrays with a nonzero (torch)
    total = 0.0
    for v in parts:                                       # in order: deterministic
        total += v
    with np.errstate(divide="ignore", over="ignore"):
        return total if kind == _SUM_ABS else math.sqrt(total) if kind == _SUM_SQUARES \
            else float(np.power(total, 1.0 / p))


def _clip_coefficient(total: float, max_norm: float) -> Optional[float]:
    """max_norm / (total + 1e-6) when that is below 1 or NaN (then the gradients are
    scaled), None when no clipping is needed."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coef = float(np.float64(max_norm) / (np.float64(total) + 1e-6))
    return None if coef >= 1.0 else coef


def get_total_norm(grads: Arrays, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> np.floating:
    """The p-norm of all of ``grads`` taken together, as ``torch.nn.utils.get_total_norm``.

    Parameters
    ----------
    grads : array or list of arrays (None entries are skipped), float32 or float64
    norm_type : float or 'inf'
        p: 2 (default), 1, inf, -inf, 0 (torch's count of arrays with a nonzero element), or
        any other real p.
    error_if_nonfinite : bool
        Raise ``NonFiniteNormError`` if the norm is NaN or ±inf.

    Returns
    -------
    total_norm : NumPy scalar of the gradients' dtype (0.0 as float64 for no gradients).
        Accumulated in double; the same bits for any thread count.

    Raises
    ------
    TypeError, ValueError
        grads not float arrays of one dtype; a bad norm_type.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> float(mk.get_total_norm([np.array([3.0]), np.array([4.0])]))
    5.0
    """
    where = "get_total_norm()"
    p = _norm_type(where, norm_type)
    arrays, dtype = _grad_list(where, grads, writeable=False)
    total = _total_norm(arrays, p)
    _check_finite(where, total, p, error_if_nonfinite)
    return dtype.type(total)


def _check_finite(where: str, total: float, p: float, error_if_nonfinite: bool) -> None:
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(
            f"{where}: the total norm of order {p} of the gradients is {total}, so it cannot "
            f"be clipped (nothing was changed); expected a finite norm (pass "
            f"error_if_nonfinite=False to scale the gradients by it anyway, as torch does)")


def clip_grad_norm_(grads: Arrays, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> np.floating:
    """Scale ``grads`` in place so that their total norm is at most ``max_norm``.

    torch.nn.utils.clip_grad_norm_'s semantics, over arrays::

        total_norm = p-norm of (p-norm(g) for g in grads)
        coef = max_norm / (total_norm + 1e-6)
        if coef < 1:  g *= coef   for every g      (also when total_norm is NaN or inf:
                                                    NaN or 0, as torch)

    Parameters
    ----------
    grads : array or list of arrays (None entries skipped), float32 or float64, writeable;
        any layout (non-contiguous arrays are read through a copy and scaled in place)
    max_norm : float >= 0 (inf: never clip)
    norm_type : float or 'inf', as ``get_total_norm``
    error_if_nonfinite : bool
        Raise ``NonFiniteNormError`` (a ValueError and a RuntimeError) instead of scaling when
        the total norm is NaN or ±inf; nothing is changed then.

    Returns
    -------
    total_norm : NumPy scalar of the gradients' dtype: the norm before clipping.

    Raises
    ------
    TypeError, ValueError
        as ``get_total_norm``; a negative or NaN max_norm; a read-only gradient. Raised
        before any gradient is changed.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> g = [np.array([3.0, 0.0]), np.array([4.0])]
    >>> float(mk.clip_grad_norm_(g, max_norm=1.0))
    5.0
    >>> [np.round(a, 6).tolist() for a in g]
    [[0.6, 0.0], [0.8]]
    """
    where = "clip_grad_norm_()"
    max_norm = V.number(where, "max_norm", max_norm, low=0.0, finite=False)
    p = _norm_type(where, norm_type)
    arrays, dtype = _grad_list(where, grads, writeable=True)
    total = _total_norm(arrays, p)
    _check_finite(where, total, p, error_if_nonfinite)
    coef = _clip_coefficient(total, max_norm)
    if coef is not None:
        _scale(arrays, dtype, coef)
    return dtype.type(total)


def _scale(arrays: List[np.ndarray], dtype: np.dtype, coef: float) -> None:
    plain = [a for a in arrays if _plain(a, dtype)]
    K._clip.scale(plain, dtype == np.float64, coef, get_num_threads())
    for a in arrays:
        if not _plain(a, dtype):
            np.multiply(a, dtype.type(coef), out=a)
