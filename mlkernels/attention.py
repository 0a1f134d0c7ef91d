"""Scaled dot-product attention and its backward, as ``torch.nn.functional``'s.

The forward never forms the (Tq, Tk) score matrix: it runs FlashAttention's tiled online
softmax and returns, on request, each row's log-sum-exp, from which the backward recomputes
the probabilities block by block. Kernels: ``mlkernels/_attention.pyx``.
"""
from __future__ import annotations

from functools import lru_cache
from math import prod, sqrt
from typing import Optional, Tuple, Union

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]


def _flag(where: str, name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _scale(where: str, scale: object, d: int) -> float:
    """The scores' factor: ``scale``, or 1/√d (any value for d = 0, where scores are 0)."""
    if scale is None:
        return 1.0 / sqrt(d) if d else 1.0
    return V.number(where, "scale", scale)


def _shapes(where: str, q, k, v) -> Tuple[tuple, int, int, int, int]:
    """(leading shape, Tq, Tk, d, dv) of q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv)."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        V.ndim_at_least(where, name, a, 2, "(..., T, head size)")
    lead = q.shape[:-2]
    for name, a in (("k", k), ("v", v)):
        if a.shape[:-2] != lead:
            raise ValueError(f"{where}: {name} has shape {a.shape} and q has shape {q.shape}; "
                             f"expected the same leading (batch, head) dimensions {lead} "
                             f"(broadcasting them is not supported)")
    Tq, d = q.shape[-2:]
    Tk = k.shape[-2]
    if k.shape[-1] != d:
        raise ValueError(f"{where}: k has shape {k.shape}; expected its last dimension to be "
                         f"q's head size {d}")
    if v.shape[-2] != Tk:
        raise ValueError(f"{where}: v has shape {v.shape}; expected {Tk} rows (as k: one "
                         f"value per key)")
    return lead, Tq, Tk, d, v.shape[-1]


def _heads(a: np.ndarray, dtype: np.dtype, lead: tuple):
    """``a`` (..., T, c) as the kernels read it: (array, offsets, row_stride) with row t of
    head n at element offsets[n] + t·row_stride from the data pointer and the c values of a row
    contiguous. Any strides of the leading axes and of T are read in place (the transposed
    (B, T, H, d) views of a transformer); other layouts are copied once."""
    item = dtype.itemsize
    strides = a.strides
    usable = (a.dtype == dtype and a.flags.aligned
              and (a.shape[-1] <= 1 or strides[-1] == item)
              and all(s % item == 0 for s in strides))
    if not usable:
        a = V.c_array(a, dtype)
        strides = a.strides
    return a, _offsets(lead, tuple(s // item for s in strides[:-2])), strides[-2] // item


@lru_cache(maxsize=256)
def _offsets(lead: tuple, steps: tuple) -> np.ndarray:
    """Σ_axis index·step for every head, flattened (read-only: cached for the next call)."""
    offsets = np.zeros(lead, np.int64)
    for axis, (size, step) in enumerate(zip(lead, steps)):
        offsets = offsets + (np.arange(size, dtype=np.int64) * step).reshape(
            (size,) + (1,) * (len(lead) - axis - 1))
    offsets = np.ascontiguousarray(offsets.reshape(-1))
    offsets.flags.writeable = False
    return offsets


def scaled_dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *,
                                 is_causal: bool = False, scale: Optional[float] = None,
                                 out=None, return_lse: bool = False
                                 ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Attention ``softmax(q kᵀ·scale + mask) v`` without forming the score matrix.

    Parameters
    ----------
    q : ndarray (..., Tq, d)
        Queries, float32 or float64; the leading axes (batch, heads) are any number, the same
        for q, k and v. Any strides (a transposed (B, T, H, d) array is read in place).
    k : ndarray (..., Tk, d)
        Keys.
    v : ndarray (..., Tk, dv)
        Values.
    is_causal : bool
        Query i sees only the keys j <= i (torch's mask, aligned at the upper left also when
        Tq != Tk).
    scale : float, optional
        The scores' factor; default 1/√d.
    out : ndarray (..., Tq, dv), or with ``return_lse`` a tuple (out, lse) of arrays or None
        Where to write the results (C-contiguous, of the inputs' dtype).
    return_lse : bool
        Also return lse (..., Tq), each row's log-sum-exp of the scaled scores (what the
        backward needs).

    Returns
    -------
    out : ndarray (..., Tq, dv)
        The attention output; with ``return_lse``, the tuple ``(out, lse)``. With no keys
        (Tk = 0) out is 0 and lse is −inf, as torch.

    Raises
    ------
    TypeError
        An input is not a float32/float64 array, the dtypes are mixed, a flag is not a bool.
    ValueError
        The shapes do not match, scale is not finite, ``out`` is unusable (wrong shape or
        dtype, read-only, not C-contiguous, overlapping an input). Nothing is written.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> q = k = v = np.ones((2, 4, 3, 8), np.float32)      # (batch, heads, T, head size)
    >>> out, lse = mk.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    >>> out.shape, lse.shape
    ((2, 4, 3, 8), (2, 4, 3))
    >>> float(out[0, 0, 2, 0]), round(float(lse[0, 0, 2]), 3)   # log(3·e^(8/√8))
    (1.0, 3.927)
    """
    where = "scaled_dot_product_attention()"
    dtype = V.float_dtype(where, q=q, k=k, v=v)
    lead, Tq, Tk, d, dv = _shapes(where, q, k, v)
    causal = _flag(where, "is_causal", is_causal)
    want_lse = _flag(where, "return_lse", return_lse)
    factor = _scale(where, scale, d)
    if want_lse:
        if out is None:
            out = (None, None)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{where}: with return_lse=True, out must be a tuple (out, lse) of "
                            f"arrays or None, got {type(out).__name__}")
        res = V.output(where, out[0], lead + (Tq, dv), dtype, (q, k, v), name="out[0] (out)")
        lse = V.output(where, out[1], lead + (Tq,), dtype, (q, k, v, res), name="out[1] (lse)")
    else:
        res = V.output(where, out, lead + (Tq, dv), dtype, (q, k, v))
        lse = None
    N = prod(lead)
    if N * Tq == 0:
        return (res, lse) if want_lse else res
    if Tk == 0:                              # no keys: as torch, 0 (and lse = log 0)
        res[...] = 0
        if want_lse:
            lse[...] = -np.inf
        return (res, lse) if want_lse else res
    lse_rows = lse.reshape(N, Tq) if want_lse else np.empty((N, Tq), dtype)
    K._attention.forward(*_heads(q, dtype, lead), *_heads(k, dtype, lead),
                         *_heads(v, dtype, lead), res.reshape(N, Tq, dv), lse_rows, Tk, d,
                         factor, causal, get_num_threads())
    return (res, lse) if want_lse else res


def scaled_dot_product_attention_backward(
        grad_out: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray,
        output: np.ndarray, lse: np.ndarray, /, *, is_causal: bool = False,
        scale: Optional[float] = None, out=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dq, dk, dv) of ``scaled_dot_product_attention``, recomputing the attention
    probabilities from ``lse`` (never the whole score matrix)::

        p_ij  = e^(s_ij − lse_i)          dp_ij = dO_i · v_j        D_i = dO_i · out_i
        ds_ij = p_ij (dp_ij − D_i)
        dq_i  = scale Σ_j ds_ij k_j       dk_j = scale Σ_i ds_ij q_i       dv_j = Σ_i p_ij dO_i

    with the sums over the pairs (i, j) where query i sees key j.

    Parameters
    ----------
    grad_out : ndarray (..., Tq, dv)
        dL/dout.
    q, k, v : ndarray
        The forward's inputs, (..., Tq, d), (..., Tk, d), (..., Tk, dv).
    output : ndarray (..., Tq, dv)
        The forward's result (``out``), positional: the keyword ``out`` names where the
        gradients go, as in every backward of this package.
    lse : ndarray (..., Tq)
        The forward's log-sum-exp (``return_lse=True``).
    is_causal, scale
        As given to the forward.
    out : tuple (dq, dk, dv) of arrays or None, optional
        Where to write the gradients (overwritten, never accumulated into).

    Returns
    -------
    (dq, dk, dv) : ndarrays of the shapes of q, k and v

    Raises
    ------
    TypeError
        An input is not a float32/float64 array, the dtypes are mixed, a flag is not a bool,
        ``out`` is not a tuple of three.
    ValueError
        The shapes do not match, scale is not finite, an ``out`` array is unusable. Nothing
        is written.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    >>> o, lse = mk.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    >>> dq, dk, dv = mk.scaled_dot_product_attention_backward(np.ones_like(o), q, k, v, o, lse,
    ...                                                       is_causal=True)
    >>> bool(np.allclose(dv.sum(axis=1), 5.0))      # each query's probabilities sum to 1
    True
    """
    where = "scaled_dot_product_attention_backward()"
    dtype = V.float_dtype(where, grad_out=grad_out, q=q, k=k, v=v, output=output, lse=lse)
    lead, Tq, Tk, d, dv = _shapes(where, q, k, v)
    V.shape_is(where, "grad_out", grad_out, lead + (Tq, dv), "q.shape[:-1] + (dv,)")
    V.shape_is(where, "output", output, lead + (Tq, dv), "the forward's out")
    V.shape_is(where, "lse", lse, lead + (Tq,), "the forward's lse, q.shape[:-1]")
    causal = _flag(where, "is_causal", is_causal)
    factor = _scale(where, scale, d)
    if out is None:
        out = (None, None, None)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError(f"{where}: out must be a tuple (dq, dk, dv) of arrays or None, got "
                        f"{type(out).__name__}")
    inputs = (grad_out, q, k, v, output, lse)
    dq = V.output(where, out[0], q.shape, dtype, inputs, name="out[0] (dq)")
    dk = V.output(where, out[1], k.shape, dtype, inputs + (dq,), name="out[1] (dk)")
    dvv = V.output(where, out[2], v.shape, dtype, inputs + (dq, dk), name="out[2] (dv)")
    N = prod(lead)
    if N == 0:
        return dq, dk, dvv
    if Tq == 0 or Tk == 0:                   # no pairs: every gradient is 0
        dq[...] = 0
        dk[...] = 0
        dvv[...] = 0
        return dq, dk, dvv
    K._attention.backward(*_heads(grad_out, dtype, lead), *_heads(q, dtype, lead),
                          *_heads(k, dtype, lead), *_heads(v, dtype, lead),
                          *_heads(output, dtype, lead),
                          V.c_array(lse, dtype).reshape(N, Tq), dq.reshape(N, Tq, d),
                          dk.reshape(N, Tk, d), dvv.reshape(N, Tk, dv), factor, causal,
                          get_num_threads())
    return dq, dk, dvv
