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
* Shapes are validated in ``mlkernels/linear.py`` before we get here (bounds checks are off).
"""
from cython cimport floating
from libc.string cimport memcpy

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
                    for j in range(N):
                        acc[j] += row[j]
                for j in range(N):
                    grad_bias[j] = <float>acc[j]
            else:
                for j in range(N):
                    grad_bias[j] = 0
                for i in range(M):
                    row = g + i * N
                    for j in range(N):
                        grad_bias[j] += row[j]
