"""Dropout whose mask is a function of (seed, offset + element index): no mask is stored.

``dropout(x, p, seed, offset=k)`` zeroes each element with probability p and scales the
others by 1/(1 − p), as ``torch.nn.functional.dropout``, with the random bits taken from the
counter-based generator Philox4x32-10 (Salmon et al. 2011) at counter offset + i for element
i. So:

* ``dropout_backward(grad_out, p, seed, offset=k)`` regenerates the same mask;
* the result is the same for any thread count and ISA variant;
* a run restarted from (seed, offset) continues bit for bit: advance the offset by the number
  of elements each call consumed (``offset += x.size``), as torch's Philox offset.

Each element uses 16 random bits: it is dropped when u < p for u uniform on the multiples of
2^-16 in [0, 1), i.e. with probability ceil(65536·p)/65536, within 1.5e-5 of p.
The generator is not torch's, so masks differ from torch's: only the statistics match.
Kernels: ``mlkernels/_dropout.pyx`` (the generator: ``mlkernels/_philox.h``).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads

__all__ = ["dropout", "dropout_backward"]

#: bits of randomness per element: an element is kept when its 16-bit uniform >= threshold
U16 = 65536


def _uint64(where: str, name: str, value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}; "
                        f"expected {what}")
    v = int(value)
    if not 0 <= v < 2**64:
        raise ValueError(f"{where}: {name} is {v}; expected {what}")
    return v


def _mask_parameters(where: str, p: object, seed: object, offset: object, n: int):
    """Validated (p, seed, offset) and the kernel's threshold and scale."""
    p = V.number(where, "p", p, low=0.0, high=1.0)
    seed = _uint64(where, "seed", seed, "an integer in [0, 2**64)")
    offset = _uint64(where, "offset", offset, "an integer in [0, 2**64)")
    if offset + n > 2**64:
        raise ValueError(f"{where}: offset {offset} + {n} elements exceeds 2**64, the "
                         f"generator's counter range; expected offset <= 2**64 - {n}")
    threshold = math.ceil(p * U16)        # exact: p·2^16 is p with its exponent moved
    if threshold >= U16:                  # nothing is kept: x·0, as torch's p = 1
        return p, seed, offset, 0, 0.0
    return p, seed, offset, threshold, 1.0 / (1.0 - p)


def _apply(where, name, x, p, seed, offset, out, identity):
    dtype = V.storage_dtype(where, **{name: x})
    p, seed, offset, threshold, scale = _mask_parameters(where, p, seed, offset, x.size)
    y = V.output(where, out, x.shape, dtype, inputs=(x,), inplace_ok=(x,))
    if identity or p == 0.0:
        if not V.same_memory(y, x):
            np.copyto(y, x)
        return y
    if dtype.itemsize == 2:     # 16-bit storage: the float32 result, rounded once
        K._dropout.dropout_apply_half(V.c_array(x, dtype).reshape(-1).view(np.uint16),
                                      y.reshape(-1).view(np.uint16), V.storage_kind(dtype),
                                      seed, offset, threshold, scale, get_num_threads())
        return y
    K._dropout.dropout_apply(V.c_array(x, dtype).reshape(-1), y.reshape(-1), seed, offset,
                             threshold, scale, get_num_threads())
    return y


def dropout(x: np.ndarray, p: float, seed: int, *, offset: int = 0, training: bool = True,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """Zero each element with probability ``p`` and scale the others by 1/(1 − p).

    Parameters
    ----------
    x : array of float32 or float64, or 16-bit storage (bfloat16 of ml_dtypes, float16)
        Any shape and strides. 16-bit: the float32 result (same mask), rounded once.
    p : float in [0, 1]
        The probability of dropping an element. p = 0 is the identity; p = 1 gives x·0
        (zeros, NaN where x is NaN or ±inf, as torch).
    seed : int in [0, 2**64)
        The key of the generator.
    offset : int in [0, 2**64 − x.size)
        The counter of the first element: element i draws its bits at offset + i. Advance it
        by ``x.size`` after each call to get fresh, never-repeating masks.
    training : bool
        False: the identity (as torch in eval mode), still written to ``out``.
    out : C-contiguous array of x's shape and dtype, optional
        Where to write the result; may be ``x`` itself (in place).

    Returns
    -------
    array of x's shape and dtype: ``x * mask``, mask = 1/(1 − p) where kept, else 0.

    Raises
    ------
    TypeError
        x not a float32/float64 array; seed or offset not an int.
    ValueError
        p outside [0, 1]; seed or offset outside their range; a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> x = np.ones(100_000, np.float32)
    >>> y = mk.dropout(x, 0.25, seed=42)
    >>> sorted(set(y.tolist()))
    [0.0, 1.3333333730697632]
    >>> bool(abs((y == 0).mean() - 0.25) < 0.01)
    True
    >>> g = mk.dropout_backward(np.ones_like(x), 0.25, seed=42)     # the same mask
    >>> bool(np.array_equal(g, y))
    True
    """
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"dropout(): training must be a bool, got {type(training).__name__}")
    return _apply("dropout()", "x", x, p, seed, offset, out, identity=not training)


def dropout_backward(grad_out: np.ndarray, p: float, seed: int, *, offset: int = 0,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``dropout(x, p, seed, offset=offset)``: grad_out times the same mask,
    regenerated from (seed, offset) -- nothing was stored.

    Parameters
    ----------
    grad_out : array of float32, float64, bfloat16 or float16 (the shape of the forward's x)
    p, seed, offset : the forward's
    out : C-contiguous array like grad_out, optional; may be ``grad_out`` itself.

    Returns
    -------
    array: ``grad_out * mask``.

    Raises
    ------
    TypeError, ValueError
        as ``dropout``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> g = mk.dropout_backward(np.full(6, 2.0), 0.5, seed=7, offset=10)
    >>> sorted(set(g.tolist())) in ([0.0, 4.0], [0.0], [4.0])
    True
    """
    return _apply("dropout_backward()", "grad_out", grad_out, p, seed, offset, out, identity=False)
