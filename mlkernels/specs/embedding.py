"""Spec rows of the embedding lookup and its backward.

A "shape" here is ``(*indices_shape, num_embeddings, embedding_dim)``: (7, 3) is 0-d indices
into a 7×3 table, (4, 5, 10, 3) a 4×5 batch of indices into a 10×3 table.
"""
from __future__ import annotations

import numpy as np

from ..embedding import embedding, embedding_backward
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none
from .storage16 import with_storage16

SHAPES = [(1, 1), (7, 3), (5, 10, 3), (4, 5, 10, 3), (0, 6, 2), (0, 0, 2), (6, 4, 0),
          (64, 1000, 33), (2000, 50, 17), (1, 1, 1), (300, 3, 1)]


def _index_args(rng, shape):
    *ishape, V, d = shape
    idx = rng.integers(0, max(V, 1), ishape) if V else np.zeros(ishape, np.int64)
    dtype = [np.int64, np.int32, np.int16, np.uint8][int(rng.integers(4))]
    if V > np.iinfo(dtype).max:
        dtype = np.int64
    kwargs = {}
    if V and rng.integers(2):
        kwargs["padding_idx"] = int(rng.integers(-V, V))
    return idx.astype(dtype), V, d, kwargs


def _forward_args(rng, dtype, shape):
    idx, V, d, kwargs = _index_args(rng, shape)
    return (idx, np.asarray(rng.standard_normal((V, d)), dtype)), kwargs


def _backward_args(rng, dtype, shape):
    idx, V, d, kwargs = _index_args(rng, shape)
    return (np.asarray(rng.standard_normal(idx.shape + (d,)), dtype), idx, V), kwargs


def _backward_scale(args, kwargs):
    """A row's sum rounds relative to the sum of |terms|, not to |sum|."""
    g, idx, V = args
    return [ref.embedding_backward(np.abs(g.astype(np.float64)), idx, V, **kwargs)]


def _check(rng):
    w = rng.standard_normal((6, 4))
    idx = np.array([[1, 5, 1], [0, 1, 3]])
    for pad in (None, 1, -1):
        # the padding row is not trained (torch's convention): its gradient is 0, so the
        # differentiated forward holds that row constant
        frozen = np.arange(6)[:, None] == (pad % 6 if pad is not None else -1)

        def forward(w, pad=pad, frozen=frozen):
            return embedding(idx, np.where(frozen, 0.5, w), padding_idx=pad)
        gradcheck(forward, lambda r, w, pad=pad: (embedding_backward(r, idx, 6, padding_idx=pad),),
                  (w,), (0,))


def _sizes(quick):
    return (10_000, 256, 4096) if quick else (50_000, 768, 16384)


def _bench_forward(quick):
    V, d, n = _sizes(quick)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((V, d), dtype=np.float32)
    idx = rng.integers(0, V, n)
    y = np.empty((n, d), np.float32)
    impls = {"mlkernels": lambda: embedding(idx, w, out=y),
             "numpy take(out=)": lambda: np.take(w, idx, axis=0, out=y)}
    torch = torch_or_none()
    if torch is not None:
        tw, ti = torch.from_numpy(w), torch.from_numpy(idx)
        impls["torch"] = lambda: torch.nn.functional.embedding(ti, tw)
    return [BenchCase(f"float32 V={V} d={d}, {n} indices", impls, nbytes=8.0 * n * d,
                      copy_nbytes=4 * n * d)]


def _bench_backward(quick):
    V, d, n = _sizes(quick)
    rng = np.random.default_rng(0)
    g = rng.standard_normal((n, d), dtype=np.float32)
    idx = rng.integers(0, V, n)
    gw = np.empty((V, d), np.float32)

    def numpy_add_at():
        gw[...] = 0
        np.add.at(gw, idx, g)
    impls = {"mlkernels": lambda: embedding_backward(g, idx, V, out=gw),
             "mlkernels (no out=)": lambda: embedding_backward(g, idx, V),
             "numpy add.at": numpy_add_at}
    torch = torch_or_none()
    if torch is not None:
        tg, ti = torch.from_numpy(g), torch.from_numpy(idx)
        impls["torch"] = lambda: torch.ops.aten.embedding_backward(tg, ti, V, -1, False, False)
    # the unavoidable traffic: write grad_weight, read grad_out
    return [BenchCase(f"float32 V={V} d={d}, {n} indices", impls,
                      nbytes=4.0 * (V * d + n * d), copy_nbytes=4 * V * d)]


SPECS = [
    KernelSpec("embedding", "embedding", embedding, ref.embedding, _forward_args, SHAPES,
               bench=with_storage16(_bench_forward, "embedding")),
    KernelSpec("embedding_backward", "embedding", embedding_backward, ref.embedding_backward,
               _backward_args, SHAPES, scale=_backward_scale, gradcheck=_check,
               backward_of="embedding",
               bench=with_storage16(_bench_backward, "embedding_backward")),
]
