"""Linear layer kernels: y = x·Wᵀ + b, and its backward.

How it is built
---------------
* All matrix products go through one helper, ``gemm``, over the fused type ``floating``
  (``float`` -> sgemm, ``double`` -> dgemm) from ``scipy.linalg.cython_blas``: the same
  OpenBLAS that NumPy's matmul uses. We do not write a GEMM; we call it well.
* Row-major arrays map to BLAS's column-major convention in that one place (see ``gemm``).
* The bias costs no extra pass: y is pre-filled with b and gemm runs with beta = 1, so the
  product is accumulated onto the bias in the GEMM's own write-back. (With beta = 0 OpenBLAS
  would clear C in a pass of its own: the fill replaces that pass rather than adding one.)
* The GIL is released around every BLAS call and loop. No OpenMP here: OpenBLAS has its own
  thread pool, and the two pools must not be interleaved (see DESIGN.md).
* Shapes are validated in ``mlkernels/linear.py`` before we get here (bounds checks are off).
"""
from cython cimport floating
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

import numpy as np

cdef enum:
    INT_MAX = 2147483647   # BLAS takes 32-bit ints: larger dims are split


cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
               floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C := op(A)·op(B) + beta·C for row-major matrices; C is m×n, the sum runs over k.

    BLAS is column-major, and a row-major matrix read column-major is its transpose. So the
    row-major C we want is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: call BLAS with the operands
    swapped (B first), each keeping its own transpose flag, and m, n swapped.
    m and k may exceed 2**31 - 1 (they are split into several calls); n and the leading
    dimensions may not (the caller refuses those). beta is 0 or 1.
    """
    cdef Py_ssize_t i, row, k0
    cdef int mi, ni = <int>n, ki, lda_i = <int>lda, ldb_i = <int>ldb, ldc_i = <int>ldc
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating one = 1, beta_k
    cdef const floating* a_part
    cdef const floating* b_part
    if m == 0 or n == 0:
        return
    if k == 0:                                   # an empty sum: C := beta·C
        if beta == 0:
            for row in range(m):
                memset(&c[row * ldc], 0, n * sizeof(floating))
        return
    row = 0
    while row < m:                               # rows of C, at most INT_MAX per call
        mi = <int>min(m - row, <Py_ssize_t>INT_MAX)
        beta_k = beta
        k0 = 0
        while k0 < k:                            # the sum, split: later parts add (beta = 1)
            ki = <int>min(k - k0, <Py_ssize_t>INT_MAX)
            # element (i, j) of op(A) sits at a[i*lda + j] (no trans) or a[j*lda + i] (trans)
            a_part = a + (row * lda + k0 if not trans_a else k0 * lda + row)
            b_part = b + (k0 * ldb if not trans_b else k0)
            if floating is float:
                sgemm(&tb, &ta, &ni, &mi, &ki, &one, <float*>b_part, &ldb_i,
                      <float*>a_part, &lda_i, &beta_k, &c[row * ldc], &ldc_i)
            else:
                dgemm(&tb, &ta, &ni, &mi, &ki, &one, <double*>b_part, &ldb_i,
                      <double*>a_part, &lda_i, &beta_k, &c[row * ldc], &ldc_i)
            beta_k = 1
            k0 += ki
        row += mi


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
