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
* Shapes, dtypes and layouts are validated in ``mlkernels/linear.py`` before we get here: the
  entry points take the arrays' data pointers (no typed memoryviews: acquiring one costs more
  than a small layer's whole product).

Reference: ``mlkernels/reference/linear.py``.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.stdint cimport uint16_t, uint32_t
from libc.string cimport memcpy

from mlkernels._act cimport Op, forward_run
from mlkernels._blas cimport (block_range, gemm, gemm_block, gemm_parallel, gemm_threads)
from mlkernels._runtime cimport blas_single_thread

cimport numpy as cnp
from mlkernels._arrays cimport data_or_null, is_double

cnp.import_array()


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


cdef void linear_forward_all(const floating* x, const floating* w, const floating* b,
                             floating* y, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                             int n_threads) noexcept nogil:
    """y = x·Wᵀ + b: each block of y pre-filled with b (or not), then gemm adds x·Wᵀ onto it."""
    cdef int blk, nt = gemm_threads(M, N, K, n_threads)
    cdef bint split_rows = M >= N
    if M == 0 or N == 0:
        return
    blas_single_thread()
    if nt == 1:
        linear_block(x, w, b, y, M, N, K, True, 0, 1)
    else:
        for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
            linear_block(x, w, b, y, M, N, K, split_rows, blk, nt)


def linear_forward(x,          # IN  (M, K)
                   weight,     # IN  (N, K)
                   bias,       # IN  (N,) or None
                   y,          # OUT (M, N)
                   Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int n_threads):
    """y = x·Wᵀ + b. C-contiguous arrays of one float dtype, shapes as noted (checked by
    mlkernels/linear.py)."""
    cdef void* px = data_or_null(x)
    cdef void* pw = data_or_null(weight)
    cdef void* pb = data_or_null(bias)
    cdef void* py = data_or_null(y)
    cdef bint f64 = is_double(y)
    with nogil:
        if f64:
            linear_forward_all[double](<double*>px, <double*>pw, <double*>pb, <double*>py,
                                       M, N, K, n_threads)
        else:
            linear_forward_all[float](<float*>px, <float*>pw, <float*>pb, <float*>py,
                                      M, N, K, n_threads)


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


cdef void linear_backward_all(const floating* g, const floating* x, const floating* w,
                              floating* grad_x, floating* grad_w, floating* grad_b,
                              Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                              int n_threads) noexcept nogil:
    """grad_x = g·W,  grad_W = gᵀ·x,  grad_b = Σ_rows g   (g = grad_out; grad_x and grad_b
    are skipped when NULL).

    Two products (one when grad_x is not wanted: the first layer of a network needs no
    gradient for its input), each cut into blocks for the threads, and one pass over g for
    the bias, its columns cut among the threads.
    """
    if M and K and grad_x != NULL:
        gemm_parallel(False, False, M, K, N, g, N, w, K, 0, grad_x, K, n_threads)
    if N and K:
        gemm_parallel(True, False, N, K, M, g, N, x, K, 0, grad_w, K, n_threads)
    if grad_b != NULL:
        bias_grad_all(g, M, N, grad_b, n_threads)


cdef void bias_grad_all(const floating* g, Py_ssize_t M, Py_ssize_t N, floating* grad_b,
                        int n_threads) noexcept nogil:
    """grad_b = Σ_rows g: one pass over g, its columns cut among the threads."""
    cdef Py_ssize_t lo, hi
    cdef int blk, nt = n_threads if M * N >= 65536 and N >= 64 else 1
    if N == 0:
        return
    if nt == 1:
        bias_grad_columns(g, M, N, 0, N, grad_b)
    else:
        for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
            block_range(N, blk, nt, True, &lo, &hi)
            bias_grad_columns(g, M, N, lo, hi, grad_b)


def bias_grad(grad_out, grad_bias, Py_ssize_t M, Py_ssize_t N, int n_threads):
    """grad_bias (N,) = Σ_rows grad_out (M, N), float32 or float64 (checked by linear.py)."""
    cdef void* pg = data_or_null(grad_out)
    cdef void* pgb = data_or_null(grad_bias)
    cdef bint f64 = is_double(grad_bias)
    with nogil:
        if f64:
            bias_grad_all[double](<double*>pg, M, N, <double*>pgb, n_threads)
        else:
            bias_grad_all[float](<float*>pg, M, N, <float*>pgb, n_threads)


def linear_backward(grad_out,     # IN  (M, N)
                    x,            # IN  (M, K)
                    weight,       # IN  (N, K)
                    grad_x,       # OUT (M, K) or None (not wanted)
                    grad_weight,  # OUT (N, K)
                    grad_bias,    # OUT (N,) or None
                    Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int n_threads):
    """The gradients of y = x·Wᵀ + b (arrays checked by mlkernels/linear.py)."""
    cdef void* pg = data_or_null(grad_out)
    cdef void* px = data_or_null(x)
    cdef void* pw = data_or_null(weight)
    cdef void* pgx = data_or_null(grad_x)
    cdef void* pgw = data_or_null(grad_weight)
    cdef void* pgb = data_or_null(grad_bias)
    cdef bint f64 = is_double(grad_weight)
    with nogil:
        if f64:
            linear_backward_all[double](<double*>pg, <double*>px, <double*>pw, <double*>pgx,
                                        <double*>pgw, <double*>pgb, M, N, K, n_threads)
        else:
            linear_backward_all[float](<float*>pg, <float*>px, <float*>pw, <float*>pgx,
                                       <float*>pgw, <float*>pgb, M, N, K, n_threads)


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


cdef void linear_act_all(const floating* x, const floating* w, const floating* b, floating* y,
                         floating* z, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, Op op,
                         Py_ssize_t band_rows, int n_threads) noexcept nogil:
    """y = act(x·Wᵀ + b): each thread takes a block of rows and runs it band by band (bias,
    gemm, activation) so that the activation reads each band from cache."""
    cdef Py_ssize_t lo, hi
    cdef int blk, nt = gemm_threads(M, N, K, n_threads)
    if M == 0 or N == 0:
        return
    if M < 2 * nt:
        nt = 1
    blas_single_thread()
    if nt == 1:
        linear_act_rows(x, w, b, y, z, 0, M, N, K, op, band_rows)
    else:
        for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
            block_range(M, blk, nt, False, &lo, &hi)
            linear_act_rows(x, w, b, y, z, lo, hi, N, K, op, band_rows)


def linear_act_forward(x,        # IN  (M, K)
                       weight,   # IN  (N, K)
                       bias,     # IN  (N,) or None
                       y,        # OUT (M, N)  act(z)
                       z,        # OUT (M, N)  the pre-activation, or None
                       int op, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       Py_ssize_t band_rows, int n_threads):
    """The fused linear + activation (arrays checked by mlkernels/linear.py)."""
    cdef void* px = data_or_null(x)
    cdef void* pw = data_or_null(weight)
    cdef void* pb = data_or_null(bias)
    cdef void* py = data_or_null(y)
    cdef void* pz = data_or_null(z)
    cdef bint f64 = is_double(y)
    with nogil:
        if f64:
            linear_act_all[double](<double*>px, <double*>pw, <double*>pb, <double*>py,
                                   <double*>pz, M, N, K, <Op>op, band_rows, n_threads)
        else:
            linear_act_all[float](<float*>px, <float*>pw, <float*>pb, <float*>py,
                                  <float*>pz, M, N, K, <Op>op, band_rows, n_threads)


# ================================================================================ bfloat16 product

cdef extern from "_bf16_product.h" nogil:
    enum:
        MLK_BP_NR
        MLK_BP_MC
    int mlk_bf16_product_available()
    Py_ssize_t mlk_bp_packed_b_words(Py_ssize_t n, Py_ssize_t k)
    Py_ssize_t mlk_bp_scratch_floats()
    void mlk_bp_pack_b(const uint16_t* b, Py_ssize_t rs, Py_ssize_t ks, Py_ssize_t n,
                       Py_ssize_t k, Py_ssize_t p0, Py_ssize_t p1, uint32_t* packed)
    void mlk_bp_product_block(const uint16_t* a, Py_ssize_t a_rs, Py_ssize_t a_ks,
                              const uint32_t* b_packed, const float* bias, Py_ssize_t i0,
                              Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t k,
                              float* c32, uint16_t* c16, Py_ssize_t ldc, float* scratch)


def bf16_product_available():
    """Whether this variant and CPU compute bfloat16 products with vdpbf16ps (AVX-512 BF16)."""
    return bool(mlk_bf16_product_available())


def bf16_product(cnp.ndarray a, Py_ssize_t a_rs, Py_ssize_t a_ks,
                 cnp.ndarray b, Py_ssize_t b_rs, Py_ssize_t b_ks,
                 Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bias, cnp.ndarray c, int n_threads):
    """c (m, n) = bias + A·Bᵀ with A(i, k) = a[i·a_rs + k·a_ks], B(j, k) = b[j·b_rs + k·b_ks]
    (bfloat16 data, strides in elements), bias float32 (n,) or None, c C-contiguous float32,
    or bfloat16 seen as uint16 (rounded once). Only when bf16_product_available(); shapes and
    strides validated by mlkernels/linear.py. _bf16_product.h has the kernel and its math.

    Threads: B is packed once (its panels split over the team), then each thread computes a
    band of C's rows -- or, with fewer 64-row bands than threads, a range of its columns."""
    cdef const uint16_t* pa = <const uint16_t*>cnp.PyArray_DATA(a)
    cdef const uint16_t* pb = <const uint16_t*>cnp.PyArray_DATA(b)
    cdef const float* pbias = <const float*>data_or_null(bias)
    cdef bint rounded = cnp.PyArray_TYPE(c) != cnp.NPY_FLOAT32
    cdef float* c32 = NULL if rounded else <float*>cnp.PyArray_DATA(c)
    cdef uint16_t* c16 = <uint16_t*>cnp.PyArray_DATA(c) if rounded else NULL
    if m == 0 or n == 0:
        return
    cdef Py_ssize_t panels = (n + MLK_BP_NR - 1) // MLK_BP_NR
    cdef Py_ssize_t bands = (m + MLK_BP_MC - 1) // MLK_BP_MC
    cdef int nt = 1 if <double>m * n * k < 2e6 else max(1, n_threads)
    cdef bint by_rows = bands >= nt
    nt = <int>min(<Py_ssize_t>nt, bands if by_rows else panels)
    cdef Py_ssize_t per = mlk_bp_scratch_floats()
    cdef uint32_t* packed = <uint32_t*>malloc(mlk_bp_packed_b_words(n, k) * sizeof(uint32_t) + 64)
    cdef float* scratch = <float*>malloc(nt * per * sizeof(float) + 64)
    cdef float* aligned = <float*>((<size_t>scratch + 63) & ~(<size_t>63))
    cdef int t
    if packed == NULL or scratch == NULL:
        free(packed)
        free(scratch)
        raise MemoryError()
    try:
        with nogil:
            if nt == 1:
                mlk_bp_pack_b(pb, b_rs, b_ks, n, k, 0, panels, packed)
                mlk_bp_product_block(pa, a_rs, a_ks, packed, pbias, 0, m, 0, n, k, c32, c16, n,
                                     aligned)
            else:
                for t in prange(nt, num_threads=nt, schedule="static"):
                    mlk_bp_pack_b(pb, b_rs, b_ks, n, k, panels * t // nt,
                                  panels * (t + 1) // nt, packed)
                for t in prange(nt, num_threads=nt, schedule="static"):
                    if by_rows:
                        mlk_bp_product_block(pa, a_rs, a_ks, packed, pbias,
                                             min(m, bands * t // nt * MLK_BP_MC),
                                             min(m, bands * (t + 1) // nt * MLK_BP_MC), 0, n, k,
                                             c32, c16, n, aligned + t * per)
                    else:
                        mlk_bp_product_block(pa, a_rs, a_ks, packed, pbias, 0, m,
                                             min(n, panels * t // nt * MLK_BP_NR),
                                             min(n, panels * (t + 1) // nt * MLK_BP_NR), k,
                                             c32, c16, n, aligned + t * per)
    finally:
        free(packed)
        free(scratch)
