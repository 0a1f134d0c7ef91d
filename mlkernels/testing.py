"""Testing helpers for mlkernels and for code built on it.

* ``TOLERANCES`` / ``tolerance(dtype)``: how close a fast kernel must be to the float64
  reference, stated once. float32 kernels are compared to a float64 reference computed on
  the same (float32) inputs, so the tolerance covers float32 rounding only.
* ``assert_close``: that comparison, with NaN/inf positions required to match, and an
  optional ``scale`` for reductions whose rounding grows with the sum of |terms|
  (e.g. ``K * |x| @ |W|.T`` for a matmul over K).
* ``gradcheck``: checks a backward against 4th-order central finite differences of its
  forward, in float64, through a random projection L = Σ f(args)·r.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["Tolerance", "TOLERANCES", "tolerance", "assert_close", "gradcheck",
           "GradcheckError", "copy_args"]


@dataclass(frozen=True)
class Tolerance:
    rtol: float  # relative to |expected| (and to ``scale`` when given)
    atol: float  # absolute floor, for results near zero


#: Fast kernel vs float64 reference. float32: ~10 ulp relative plus a small floor, as the
#: peers use for composite kernels (PyTorch's OpInfo: rtol 1.3e-6, atol 1e-5; ours is
#: tighter on the floor). float64: ~1e-12 relative.
TOLERANCES = {
    np.dtype(np.float32): Tolerance(rtol=1.3e-6, atol=1e-6),
    np.dtype(np.float64): Tolerance(rtol=1e-12, atol=1e-14),
}


#: 16-bit storage (computed in float32, each result rounded once): half a unit in the last
#: place of the storage (2^-11 float16, 2^-8 bfloat16) on top of float32's error, doubled for
#: an input that was itself rounded; the floor is float16's smallest normal.
HALF_TOLERANCES = {"float16": Tolerance(rtol=1e-3, atol=6.2e-5),
                   "bfloat16": Tolerance(rtol=8e-3, atol=6.2e-5)}


def tolerance(dtype) -> Tolerance:
    dtype = np.dtype(dtype)
    if dtype.itemsize == 2 and dtype.name in HALF_TOLERANCES:
        return HALF_TOLERANCES[dtype.name]
    return TOLERANCES[dtype]


def assert_close(actual, expected, dtype=None, *, scale=None, rtol: Optional[float] = None,
                 atol: Optional[float] = None, err_msg: str = "") -> None:
    """Assert |actual - expected| <= atol + rtol·(|expected| + scale), elementwise.

    ``dtype`` picks the tolerance (default: actual's dtype); ``rtol``/``atol`` override it
    (say why where you do). NaN must match NaN and ±inf must match exactly. Shapes must be
    equal (no broadcasting).

    Parameters
    ----------
    actual, expected : array_like
        The fast result and the reference (float64, say).
    dtype : dtype, optional
        Whose tolerance (``TOLERANCES``) applies; default: actual's.
    scale : array_like, optional
        Added to |expected| in the relative term: the size of the terms a reduction summed.
    rtol, atol : float, optional
        Override the dtype's tolerance.
    err_msg : str
        Prefixed to the failure message.

    Returns
    -------
    None

    Raises
    ------
    AssertionError
        Naming the worst element, when any element is out of tolerance, NaN/inf positions
        differ, or the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels.testing import assert_close
    >>> assert_close(np.float32([1.0, np.nan]), [1.0 + 1e-7, np.nan])
    >>> assert_close(np.float32([1.0]), [1.01])
    Traceback (most recent call last):
    AssertionError: ...
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}. {err_msg}")
    tol = tolerance(dtype if dtype is not None else actual.dtype)
    rtol = tol.rtol if rtol is None else rtol
    atol = tol.atol if atol is None else atol
    a = actual.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(expected)
    inf_e = np.isinf(expected)
    bad = nan_a != nan_e
    bad |= inf_e & (a != expected)
    finite = ~nan_e & ~inf_e
    bound = atol + rtol * np.abs(expected)
    if scale is not None:
        bound = bound + rtol * np.broadcast_to(np.abs(scale), expected.shape)
    with np.errstate(invalid="ignore"):
        bad |= finite & ~(np.abs(a - expected) <= bound)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        worst = [(tuple(int(v) for v in i), a[tuple(i)], expected[tuple(i)]) for i in idx]
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements differ beyond rtol={rtol:g}, "
            f"atol={atol:g}; first (index, actual, expected): {worst}. {err_msg}")


def copy_args(args):
    """A copy of a call's arguments in which every array (also inside lists and tuples, as
    optimizer steps take them) is copied, so an in-place kernel cannot alter the original."""
    def cp(a):
        if isinstance(a, np.ndarray):
            return a.copy()
        if isinstance(a, (list, tuple)):
            return type(a)(cp(x) for x in a)
        return a
    return tuple(cp(a) for a in args)


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


def gradcheck(forward: Callable[..., object], backward: Callable[..., Sequence],
              args: Sequence, wrt: Sequence[int], *, eps: float = 1e-3, rtol: float = 1e-6,
              atol: float = 1e-8, max_checks: int = 48, seed: int = 0) -> bool:
    """Check ``backward`` against central finite differences of ``forward``.

    ``forward(*args)`` returns the output array (or a tuple whose first item is it).
    ``backward(r, *args)`` returns the gradients of L = Σ forward(*args)·r with respect to
    the arguments at positions ``wrt``, in that order (a longer tuple is fine: extra items
    are ignored; a None item is skipped). Arguments must be float64 arrays.

    Each derivative is the 4th-order central difference
    (-L(x+2h) + 8L(x+h) - 8L(x-h) + L(x-2h)) / 12h, with h = eps·max(1, |x_i|), taken on up
    to ``max_checks`` elements per argument (all of them for small arrays). Functions must be
    smooth around the inputs (keep them away from kinks such as relu at 0).

    Parameters
    ----------
    forward : callable
        ``forward(*args)`` -> the output array (or a tuple whose first item is it).
    backward : callable
        ``backward(r, *args)`` -> the gradients of Σ forward(*args)·r for ``wrt``.
    args : sequence
        The arguments (float64 arrays where differentiated).
    wrt : sequence of int
        The positions of the arguments to check.
    eps, rtol, atol : float
        Step (relative to max(1, |x_i|)) and the tolerance of the comparison.
    max_checks : int
        Elements checked per argument (randomly chosen by ``seed`` when more).
    seed : int

    Returns
    -------
    bool
        True.

    Raises
    ------
    GradcheckError
        Naming the argument and element whose gradient disagrees.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> from mlkernels.testing import gradcheck
    >>> x = np.linspace(-2, 2, 7)
    >>> gradcheck(mk.gelu, lambda r, x: (mk.gelu_backward(r, x),), (x,), (0,))
    True
    """
    rng = np.random.default_rng(seed)
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    for i in wrt:
        if not (isinstance(args[i], np.ndarray) and args[i].dtype == np.float64):
            raise TypeError(f"gradcheck: argument {i} must be a float64 array")

    def output(*a):
        y = forward(*a)
        return np.asarray(y[0] if isinstance(y, tuple) else y, np.float64)

    y0 = output(*args)
    r = rng.standard_normal(y0.shape)
    analytic = list(backward(r.astype(y0.dtype), *args))

    def loss() -> float:
        return float(np.sum(output(*args) * r))

    for slot, i in enumerate(wrt):
        grad = analytic[slot]
        if grad is None:
            continue
        x = args[i]
        grad = np.asarray(grad, np.float64)
        if grad.shape != x.shape:
            raise GradcheckError(f"gradient {slot} has shape {grad.shape}, argument {i} has "
                                 f"shape {x.shape}")
        flat = x.reshape(-1)  # a view: perturbing it perturbs args[i]
        picks = np.arange(flat.size)
        if flat.size > max_checks:
            picks = rng.choice(flat.size, max_checks, replace=False)
        for j in picks:
            x0 = flat[j]
            h = eps * max(1.0, abs(x0))
            values = []
            for step in (2, 1, -1, -2):
                flat[j] = x0 + step * h
                values.append(loss())
            flat[j] = x0
            numeric = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
            exact = grad.reshape(-1)[j]
            if not abs(numeric - exact) <= atol + rtol * max(abs(numeric), abs(exact)):
                raise GradcheckError(
                    f"argument {i}, element {np.unravel_index(j, x.shape)}: analytic "
                    f"{exact!r} vs finite difference {numeric!r} (rtol={rtol}, atol={atol})")
    return True
