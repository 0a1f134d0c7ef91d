"""Embedding lookup and its backward, as ``torch.nn.functional.embedding``.

``embedding(indices, weight)`` returns the rows of ``weight`` (num_embeddings, d) named by
integer ``indices`` of any shape: shape ``indices.shape + (d,)``. Its backward sums the rows
of ``grad_out`` into the rows of grad_weight they came from, deterministically (the same bits
for any thread count), and leaves the padding row's gradient at zero.

Indices: any NumPy integer dtype (int32 and int64 are read as they are; int8/16, uint8/16/32/64
are converted once to int64); bool and floating arrays are refused, as torch refuses them.
Every index must lie in [0, num_embeddings): a negative or too large index is a ValueError that
names it and its position, raised before anything is written (torch raises IndexError).
``padding_idx`` follows torch: an int in [-num_embeddings, num_embeddings), a negative one
counting from the end; it does not change the forward (nn.Embedding only zeroes that row
of its weight when it creates it), only the backward.

16-bit storage (bfloat16 of ml_dtypes, numpy.float16): the forward copies the rows (their
16-bit bits). The backward takes a 16-bit ``grad_out`` and returns a float32 grad_weight by
default -- the float32 kernel's result on the widened grad_out, exactly -- or, when ``out=``
is an array of grad_out's 16-bit dtype, that result rounded once to it. The sums are never
accumulated in 16 bits (a row named a thousand times would lose most of its sum).
Kernels: ``mlkernels/_embedding.pyx``.
"""
from __future__ import annotations

from math import prod
from typing import Optional

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads

__all__ = ["embedding", "embedding_backward"]

_NATIVE = (np.dtype(np.int32), np.dtype(np.int64))


def _indices(where: str, indices: object, num_embeddings: int) -> np.ndarray:
    """indices as a flat, C-contiguous int32 or int64 array, every value in range."""
    if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
        raise TypeError(f"{where}: indices must be an array of integers, got "
                        f"{V._describe(indices)}; expected int64 or int32 (or another "
                        f"integer dtype)")
    flat = indices.reshape(-1)
    if flat.size:
        lo, hi = flat.min(), flat.max()
        if lo < 0 or hi >= num_embeddings:
            bad = np.flatnonzero((flat < 0) | (flat >= num_embeddings))[0]
            position = np.unravel_index(bad, indices.shape) if indices.ndim else ()
            raise ValueError(f"{where}: indices holds {flat[bad]} at position "
                             f"{tuple(int(p) for p in position)}, outside [0, "
                             f"num_embeddings={num_embeddings})")
    dtype = indices.dtype.newbyteorder("=")
    dtype = dtype if dtype in _NATIVE else np.dtype(np.int64)
    return V.c_array(flat, dtype)


def _padding(where: str, padding_idx: object, num_embeddings: int) -> int:
    """padding_idx as a row in [0, num_embeddings), or -1 for none."""
    if padding_idx is None:
        return -1
    padding_idx = V.integer(where, "padding_idx", padding_idx, low=-num_embeddings,
                            high=num_embeddings - 1,
                            expected=f"an int in [-num_embeddings, num_embeddings) = "
                                     f"[{-num_embeddings}, {num_embeddings}) (or None)")
    return int(padding_idx) % num_embeddings


def embedding(indices: np.ndarray, weight: np.ndarray, *, padding_idx: Optional[int] = None,
              out: Optional[np.ndarray] = None) -> np.ndarray:
    """Look up rows of ``weight``: ``out[..., :] = weight[indices[...], :]``.

    Parameters
    ----------
    indices : integer array of any shape, values in [0, num_embeddings)
    weight : array (num_embeddings, embedding_dim) of float32 or float64, or of 16-bit
        storage (bfloat16 of ml_dtypes, float16): its rows are copied as they are
    padding_idx : int or None
        Checked as torch does, otherwise unused by the forward (see the module's doc).
    out : C-contiguous array of shape ``indices.shape + (embedding_dim,)``, optional

    Returns
    -------
    array of shape ``indices.shape + (embedding_dim,)`` and weight's dtype.

    Raises
    ------
    TypeError
        indices not an integer array; weight not float32/float64/bfloat16/float16.
    ValueError
        weight not 2-d; an index out of range (named with its position); a bad padding_idx
        or ``out``.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> weight = np.arange(12.0).reshape(4, 3)
    >>> mk.embedding(np.array([[3, 0], [1, 1]]), weight)
    array([[[ 9., 10., 11.],
            [ 0.,  1.,  2.]],
    <BLANKLINE>
           [[ 3.,  4.,  5.],
            [ 3.,  4.,  5.]]])
    """
    where = "embedding()"
    dtype = V.storage_dtype(where, weight=weight)
    if weight.ndim != 2:
        raise ValueError(f"{where}: weight has shape {weight.shape}; expected 2-d "
                         f"(num_embeddings, embedding_dim)")
    num_embeddings, dim = weight.shape
    _padding(where, padding_idx, num_embeddings)
    idx = _indices(where, indices, num_embeddings)
    y = V.output(where, out, indices.shape + (dim,), dtype, inputs=(weight, indices))
    if idx.size and dim:
        w, rows = V.c_array(weight, dtype), y.reshape(idx.size, dim)
        if dtype.itemsize == 2:         # 16-bit storage: the rows' bits
            w, rows = w.view(np.uint16), rows.view(np.uint16)
        K._embedding.embedding_forward(w, idx, rows, get_num_threads())
    return y


def embedding_backward(grad_out: np.ndarray, indices: np.ndarray, num_embeddings: int, *,
                       padding_idx: Optional[int] = None,
                       out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``embedding`` with respect to weight: a deterministic scatter-add.

    ``grad_weight[r] = Σ grad_out[i]`` over the positions i with ``indices[i] == r``; zero
    for rows no index names and for the padding row. The sum runs over the positions in
    increasing order (in double for float32), so the bits do not depend on the thread count.

    Parameters
    ----------
    grad_out : array of shape ``indices.shape + (embedding_dim,)``, float32 or float64, or
        bfloat16 (ml_dtypes) / float16: widened to float32 as it is read
    indices : the forward's indices
    num_embeddings : int, the number of rows of weight
    padding_idx : int or None, as in ``embedding``: that row's gradient is zero
    out : C-contiguous array (num_embeddings, embedding_dim), optional; overwritten. Of
        grad_out's dtype; for a 16-bit grad_out float32 (the default) or grad_out's 16-bit
        dtype (the float32 result rounded once).

    Returns
    -------
    grad_weight : array (num_embeddings, embedding_dim) of grad_out's dtype (float32 for a
        16-bit grad_out, unless ``out`` is 16-bit)

    Raises
    ------
    TypeError, ValueError
        as ``embedding``; grad_out of the wrong shape; num_embeddings not an int >= 0.

    Examples
    --------
    >>> import numpy as np, mlkernels as mk
    >>> g = np.ones((3, 2))
    >>> mk.embedding_backward(g, np.array([2, 0, 2]), 4, padding_idx=0)
    array([[0., 0.],
           [0., 0.],
           [2., 2.],
           [0., 0.]])
    """
    where = "embedding_backward()"
    dtype = V.storage_dtype(where, grad_out=grad_out)
    num_embeddings = V.integer(where, "num_embeddings", num_embeddings, low=0,
                               expected="an int >= 0")
    pad = _padding(where, padding_idx, num_embeddings)
    if not isinstance(indices, np.ndarray):
        _indices(where, indices, num_embeddings)          # raises the TypeError
    if grad_out.ndim != indices.ndim + 1 or grad_out.shape[:-1] != indices.shape:
        raise ValueError(f"{where}: grad_out has shape {grad_out.shape} but indices has shape "
                         f"{indices.shape}; expected indices.shape + (embedding_dim,)")
    dim = grad_out.shape[-1]
    idx = _indices(where, indices, num_embeddings)
    out_dtype = dtype
    if dtype.itemsize == 2:     # 16-bit grad_out: a float32 grad_weight, or out='s 16 bits
        out_dtype = V.FLOAT_DTYPES[0]
        if isinstance(out, np.ndarray) and out.dtype not in (out_dtype, dtype):
            raise ValueError(f"{where}: out has dtype {out.dtype}; expected float32 (the "
                            f"default for {dtype} grad_out) or {dtype}")
        if isinstance(out, np.ndarray) and out.dtype == dtype:
            out_dtype = dtype
    zeroed = out is None      # np.zeros: calloc'd pages, the kernel skips the rows of zeros
    gw = np.zeros((num_embeddings, dim), out_dtype) if zeroed else \
        V.output(where, out, (num_embeddings, dim), out_dtype, inputs=(grad_out, indices))
    if num_embeddings and dim:
        g = V.c_array(grad_out, dtype).reshape(idx.size, dim)
        if dtype.itemsize == 2:
            K._embedding.embedding_backward_half(
                V.storage_kind(dtype), g.view(np.uint16), idx,
                gw.view(np.uint16) if out_dtype.itemsize == 2 else gw,
                V.storage_kind(out_dtype), pad, zeroed, get_num_threads())
        else:
            K._embedding.embedding_backward(g, idx, gw, pad, zeroed, get_num_threads())
    return gw
