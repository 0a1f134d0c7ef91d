"""Linear layer kernels: y = x·Wᵀ + b, and its backward.

How it is built
---------------
* All matrix products go through one helper, ``gemm`` (``_blas.pxd``), over the fused type ``floating``
  (``float`` -> sgemm, ``double`` -> dgemm) from ``scipy.linalg.cython_blas``: the same
  OpenBLAS that NumPy's matmul uses. We do not write a GEMM; we call it well.
* Row-major arrays map to BLAS's column-major convention in that one place.
* The bias costs no extra pass: y is pre-filled with b and gemm runs with beta = 1, so the
  product is accumulated onto the bias in the GEMM's own write-back. (With beta = 0 OpenBLAS
  would clear C in a pass of its own: the fill replaces that pass rather than adding one.)
* The GIL is released around every BLAS call and loop. No OpenMP here: OpenBLAS has its own
  thread pool, and the two pools must not be interleaved (see DESIGN.md).
* The fused linear + activation (``linear_act_forward``) runs the same product one block of
  rows at a time and applies the activation to each block right after its gemm, while the
  block is still in cache: the activation costs no extra pass over memory.
* Shapes are validated in ``mlkernels/linear.py`` before we get here (bounds checks are off).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy

from mlkernels._act cimport Op, forward_run
from mlkernels._blas cimport gemm

import numpy as np

def linear_forward(const floating[:, ::1] x,       # IN  (M, K)
                   const floating[:, ::1] weight,  # IN  (N, K)
                   const floating[::1] bias,       # IN  (N,) or None
                   floating[:, ::1] y):            # OUT (M, N)
    """y = x·Wᵀ + b: y pre-filled with b (or zeros), then gemm accumulates x·Wᵀ onto it."""
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0], i
    if M == 0 or N == 0:
        return
    cdef bint has_bias = bias is not None
    cdef const floating* b_ptr = &bias[0] if has_bias else NULL
    with nogil:
        if has_bias:
            for i in range(M):
                memcpy(&y[i, 0], b_ptr, N * sizeof(floating))
        gemm(False, True, M, N, K, &x[0, 0] if K else NULL, K, &weight[0, 0] if K else NULL, K,
             1 if has_bias else 0, &y[0, 0], N)


def linear_backward(const floating[:, ::1] grad_out,   # IN  (M, N)
                    const floating[:, ::1] x,          # IN  (M, K)
                    const floating[:, ::1] weight,     # IN  (N, K)
                    floating[:, ::1] grad_x,           # OUT (M, K)
                    floating[:, ::1] grad_weight,      # OUT (N, K)
                    floating[::1] grad_bias):          # OUT (N,) or None
    """grad_x = g·W,  grad_W = gᵀ·x,  grad_b = Σ_rows g   (g = grad_out).

    Two gemm calls and one pass over g for the bias. For float32 the column sums are
    accumulated in double: M can be large, and float32 running sums lose digits.
    """
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0], i, j
    cdef bint has_bias = grad_bias is not None
    cdef double[::1] acc = np.zeros(N if (floating is float and has_bias) else 0, np.float64)
    cdef const floating* g = &grad_out[0, 0] if M and N else NULL
    cdef const floating* row
    with nogil:
        if M and K:
            gemm(False, False, M, K, N, g, N, &weight[0, 0] if N else NULL, K, 0, &grad_x[0, 0], K)
        if N and K:
            gemm(True, False, N, K, M, g, N, &x[0, 0] if M else NULL, K, 0, &grad_weight[0, 0], K)
        if has_bias and N:
            if floating is float:
                for i in range(M):
                    row = g + i * N
                    for j in range(N):  # simd
                        acc[j] += row[j]
                for j in range(N):
                    grad_bias[j] = <float>acc[j]
            else:
                for j in range(N):
                    grad_bias[j] = 0
                for i in range(M):
                    row = g + i * N
                    for j in range(N):  # simd
                        grad_bias[j] += row[j]


cdef enum:
    ACT_CHUNK = 16384       # elements per OpenMP work item of the activation


def linear_act_forward(const floating[:, ::1] x,       # IN  (M, K)
                       const floating[:, ::1] weight,  # IN  (N, K)
                       const floating[::1] bias,       # IN  (N,) or None
                       floating[:, ::1] y,             # OUT (M, N)  act(z)
                       floating[:, ::1] z,             # OUT (M, N)  the pre-activation, or None
                       int op, Py_ssize_t block_rows, int n_threads):
    """y = act(x·Wᵀ + b), block_rows rows at a time: bias fill, gemm, then (still in cache) the
    pre-activation kept in z if wanted and the activation applied to the block in place."""
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0], i, r0, rows, c, n_el
    if M == 0 or N == 0:
        return
    cdef bint has_bias = bias is not None, keep = z is not None
    cdef const floating* b_ptr = &bias[0] if has_bias else NULL
    cdef const floating* px = &x[0, 0] if K else NULL
    cdef const floating* pw = &weight[0, 0] if K else NULL
    cdef floating* py = &y[0, 0]
    cdef floating* pz = &z[0, 0] if keep else NULL
    cdef floating* blk
    with nogil:
        r0 = 0
        while r0 < M:
            rows = min(block_rows, M - r0)
            blk = py + r0 * N
            if has_bias:
                for i in range(rows):
                    memcpy(blk + i * N, b_ptr, N * sizeof(floating))
            gemm(False, True, rows, N, K, px + r0 * K if K else NULL, K, pw, K,
                 1 if has_bias else 0, blk, N)
            if keep:
                memcpy(pz + r0 * N, blk, rows * N * sizeof(floating))
            n_el = rows * N
            if n_threads > 1:
                for c in prange((n_el + ACT_CHUNK - 1) // ACT_CHUNK, num_threads=n_threads,
                                schedule="static"):
                    forward_run(<Op>op, blk + c * ACT_CHUNK, blk + c * ACT_CHUNK,
                                min(<Py_ssize_t>ACT_CHUNK, n_el - c * ACT_CHUNK), 0, 0)
            else:
                forward_run(<Op>op, blk, blk, n_el, 0, 0)
            r0 += rows
