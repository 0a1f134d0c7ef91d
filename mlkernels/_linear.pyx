"""Linear layer kernels: y = x·Wᵀ + b, and its backward.

How it is built
---------------
* All matrix products go through ``_blas.pxd`` over the fused type ``floating`` (``float`` ->
  sgemm, ``double`` -> dgemm) from ``scipy.linalg.cython_blas``: the same OpenBLAS that
  NumPy's matmul uses. We do not write a GEMM; we call it well.
* Threads: each thread of our OpenMP team computes one block of the output with a
  single-threaded gemm (``gemm_parallel``; ``_blas.pxd`` says why OpenBLAS's own threads are
  not used). So products and the other kernels share one team.
* The bias costs no extra pass: each block of y is pre-filled with b and gemm runs with
  beta = 1, so the product is accumulated onto the bias in the GEMM's own write-back. (With
  beta = 0 OpenBLAS would clear C in a pass of its own: the fill replaces that pass.)
* The fused linear + activation (``linear_act_forward``) runs the product a band of rows at a
  time on each thread and applies the activation to the band right after its gemm, while the
  band is still in cache: the activation costs no extra pass over memory.
* Shapes are validated in ``mlkernels/linear.py`` before we get here (bounds checks are off).

Reference: ``mlkernels/reference/linear.py``.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from mlkernels._act cimport Op, forward_run
from mlkernels._blas cimport (block_range, gemm, gemm_block, gemm_parallel, gemm_threads)
from mlkernels._runtime cimport blas_single_thread


cdef void fill_rows(floating* y, Py_ssize_t rows, Py_ssize_t ldy, const floating* b,
                    Py_ssize_t n) noexcept nogil:
    """y[i, 0:n] = b for each of the rows (the bias, before gemm adds the product)."""
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(y + i * ldy, b, n * sizeof(floating))


cdef void linear_block(const floating* x, const floating* w, const floating* b, floating* y,
                       Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, bint split_rows,
                       int block, int n_blocks) noexcept nogil:
    """One thread's block of y = x·Wᵀ + b: its rows (or columns) of y filled with b, then
    gemm adds its product onto them."""
    cdef Py_ssize_t lo, hi
    if b != NULL:
        if split_rows:
            block_range(M, block, n_blocks, False, &lo, &hi)
            fill_rows(y + lo * N, hi - lo, N, b, N)
        else:
            block_range(N, block, n_blocks, True, &lo, &hi)
            fill_rows(y + lo, M, N, b + lo, hi - lo)
    gemm_block(False, True, M, N, K, x, K, w, K, 1 if b != NULL else 0, y, N, split_rows,
               block, n_blocks)


def linear_forward(const floating[:, ::1] x,       # IN  (M, K)
                   const floating[:, ::1] weight,  # IN  (N, K)
                   const floating[::1] bias,       # IN  (N,) or None
                   floating[:, ::1] y,             # OUT (M, N)
                   int n_threads):
    """y = x·Wᵀ + b: each block of y pre-filled with b (or not), then gemm adds x·Wᵀ onto it."""
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0]
    cdef int blk, nt
    if M == 0 or N == 0:
        return
    cdef const floating* b = &bias[0] if bias is not None else NULL
    cdef const floating* px = &x[0, 0] if K else NULL
    cdef const floating* pw = &weight[0, 0] if K else NULL
    cdef bint split_rows = M >= N
    with nogil:
        nt = gemm_threads(M, N, K, n_threads)
        blas_single_thread()
        if nt == 1:
            linear_block(px, pw, b, &y[0, 0], M, N, K, True, 0, 1)
        else:
            for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
                linear_block(px, pw, b, &y[0, 0], M, N, K, split_rows, blk, nt)


cdef void bias_grad_columns(const floating* g, Py_ssize_t M, Py_ssize_t N, Py_ssize_t lo,
                            Py_ssize_t hi, floating* grad_bias) noexcept nogil:
    """grad_bias[j] = Σ_i g[i, j] for the columns lo ≤ j < hi, summed in double (M can be
    large, and float32 running sums lose digits), row by row: the same order, so the same
    bits, for any split of the columns."""
    cdef Py_ssize_t i, j, n = hi - lo
    cdef const floating* row
    cdef double* acc = <double*>malloc(max(n, 1) * sizeof(double))
    if acc == NULL:
        return     # (cannot happen for a few KiB; the caller checked n)
    for j in range(n):
        acc[j] = 0
    for i in range(M):
        row = g + i * N + lo
        for j in range(n):  # simd
            acc[j] += row[j]
    for j in range(n):
        grad_bias[lo + j] = <floating>acc[j]
    free(acc)


def linear_backward(const floating[:, ::1] grad_out,   # IN  (M, N)
                    const floating[:, ::1] x,          # IN  (M, K)
                    const floating[:, ::1] weight,     # IN  (N, K)
                    floating[:, ::1] grad_x,           # OUT (M, K) or None (not wanted)
                    floating[:, ::1] grad_weight,      # OUT (N, K)
                    floating[::1] grad_bias,           # OUT (N,) or None
                    int n_threads):
    """grad_x = g·W,  grad_W = gᵀ·x,  grad_b = Σ_rows g   (g = grad_out).

    Two products (one when grad_x is not wanted: the first layer of a network needs no
    gradient for its input), each cut into blocks for the threads, and one pass over g for
    the bias, its columns cut among the threads.
    """
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0], lo, hi
    cdef bint has_bias = grad_bias is not None, has_grad_x = grad_x is not None
    cdef const floating* g = &grad_out[0, 0] if M and N else NULL
    cdef int blk, nt
    with nogil:
        if M and K and has_grad_x:
            gemm_parallel(False, False, M, K, N, g, N, &weight[0, 0] if N else NULL, K, 0,
                          &grad_x[0, 0], K, n_threads)
        if N and K:
            gemm_parallel(True, False, N, K, M, g, N, &x[0, 0] if M else NULL, K, 0,
                          &grad_weight[0, 0], K, n_threads)
        if has_bias and N:
            nt = n_threads if M * N >= 65536 and N >= 64 else 1
            if nt == 1:
                bias_grad_columns(g, M, N, 0, N, &grad_bias[0])
            else:
                for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
                    block_range(N, blk, nt, True, &lo, &hi)
                    bias_grad_columns(g, M, N, lo, hi, &grad_bias[0])


cdef void linear_act_rows(const floating* x, const floating* w, const floating* b, floating* y,
                          floating* z, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t N, Py_ssize_t K,
                          Op op, Py_ssize_t band_rows) noexcept nogil:
    """Rows r0..r1 of y = act(x·Wᵀ + b), a band of ``band_rows`` rows at a time: bias fill,
    gemm, then, while the band is in cache, the pre-activation kept in z (if wanted) and the
    activation applied in place."""
    cdef Py_ssize_t r, rows
    r = r0
    while r < r1:
        rows = min(band_rows, r1 - r)
        if b != NULL:
            fill_rows(y + r * N, rows, N, b, N)
        gemm(False, True, rows, N, K, x + r * K if K else NULL, K, w, K,
             1 if b != NULL else 0, y + r * N, N)
        if z != NULL:
            memcpy(z + r * N, y + r * N, rows * N * sizeof(floating))
        forward_run(op, y + r * N, y + r * N, rows * N, 0, 0)
        r += rows


def linear_act_forward(const floating[:, ::1] x,       # IN  (M, K)
                       const floating[:, ::1] weight,  # IN  (N, K)
                       const floating[::1] bias,       # IN  (N,) or None
                       floating[:, ::1] y,             # OUT (M, N)  act(z)
                       floating[:, ::1] z,             # OUT (M, N)  the pre-activation, or None
                       int op, Py_ssize_t band_rows, int n_threads):
    """y = act(x·Wᵀ + b): each thread takes a block of rows and runs it band by band (bias,
    gemm, activation) so that the activation reads each band from cache."""
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0], lo, hi
    cdef int blk, nt
    if M == 0 or N == 0:
        return
    cdef const floating* b = &bias[0] if bias is not None else NULL
    cdef const floating* px = &x[0, 0] if K else NULL
    cdef const floating* pw = &weight[0, 0] if K else NULL
    cdef floating* pz = &z[0, 0] if z is not None else NULL
    with nogil:
        nt = gemm_threads(M, N, K, n_threads)
        if M < 2 * nt:
            nt = 1
        blas_single_thread()
        if nt == 1:
            linear_act_rows(px, pw, b, &y[0, 0], pz, 0, M, N, K, <Op>op, band_rows)
        else:
            for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
                block_range(M, blk, nt, False, &lo, &hi)
                linear_act_rows(px, pw, b, &y[0, 0], pz, lo, hi, N, K, <Op>op, band_rows)
