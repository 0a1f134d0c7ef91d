"""Softmax, log-softmax and loss kernels.

How it is built
---------------
* Rows (M, C), C contiguous: the softmax axis is moved last by the caller (one copy when it
  is not). A row is read from memory once: its max, then Σ e^(x − max) while writing e^(x − max)
  into y (the row is now in cache), then one scaling pass over y. Rows go to threads.
* Stability: every exponent is x − max ≤ 0, so nothing overflows (logits of ±1e4 are fine);
  log-sum-exp = max + log Σ e^(x − max). A row of all −inf gives NaN, as torch.
* cross_entropy reads the logits once and writes one loss per row: log-sum-exp, the target's
  logit and (for label smoothing) the row sum, in the same pass. Its backward writes
  (softmax − (1 − ε)·onehot − ε/C)·scale in one pass.
* exp is the vectorized exp of _vecmath.h. Every exponent here is x − max ≤ 0 (or NaN), so
  the float32 rows take mlk_exp_nonposf: mlk_expf's bits without its overflow cases, 27
  vector instructions per 16 values where mlk_expf takes 39 -- the exponential is most of a
  row's arithmetic (docs/kernels/loss.md). max, sums and dot products are the lane-parallel
  reductions of _reduce.pxd, in double: a row's passes all vectorize (a plain running sum
  would keep each loop containing it scalar).
* The entry points take the arrays' data pointers (validated by mlkernels/loss.py; no typed
  memoryviews, whose acquisition costs more than a small call's work), and class targets are
  range-checked here, in C, before anything is written.

Reference: mlkernels/reference/loss.py.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log, INFINITY, NAN

from libc.stdlib cimport free, malloc

from mlkernels._act cimport v_exp, v_exp_nonpositive, v_sigmoid, v_softplus
from mlkernels._reduce cimport sum_of, dot_of, max_of
from libc.stdint cimport uint16_t
from mlkernels._half cimport mlk_widen, mlk_narrow, mlk_narrow_to
from mlkernels._runtime cimport stream_from
from mlkernels._stream cimport mlk_stream_fence

cimport numpy as cnp
from mlkernels._arrays cimport data_or_null, is_double

import numpy as np

cnp.import_array()

cdef enum:
    SERIAL_BELOW = 32768


cdef inline int threads_for(Py_ssize_t total, int n_threads) noexcept nogil:
    return 1 if total < SERIAL_BELOW else n_threads


cdef enum:
    EXP_BLOCK = 256            # exponentials buffered on the stack when only their sum is needed


cdef double row_exp_sum(const floating* x, floating* e, Py_ssize_t C, floating m) noexcept nogil:
    """e = exp(x − m) and returns Σ e in double, m being the row's maximum (so x − m ≤ 0 or
    NaN: the cheaper exponential with no overflow cases). e may be NULL (only the sum is
    wanted): the exponentials then go through a small stack buffer. Computing them in one
    loop and summing in another keeps both vectorized (see _reduce.pxd)."""
    cdef floating buf[EXP_BLOCK]
    cdef Py_ssize_t j, start = 0, size
    cdef double total = 0
    if e != NULL:
        for j in range(C):                       # simd
            e[j] = v_exp_nonpositive(x[j] - m)
        return sum_of(e, C)
    while start < C:
        size = min(<Py_ssize_t>EXP_BLOCK, C - start)
        for j in range(size):                    # simd
            buf[j] = v_exp_nonpositive(x[start + j] - m)
        total += sum_of(buf, size)
        start += size
    return total


# ------------------------------------------------------------------ softmax / log_softmax

cdef void softmax_row(const floating* x, floating* y, Py_ssize_t C, bint log_) noexcept nogil:
    """softmax: y = e^(x − max) / Σ e^(x − max);  log_softmax: y = (x − max) − log Σ e^(x − max)."""
    cdef Py_ssize_t j
    cdef floating m = max_of(x, C), scale, shift
    cdef double total
    if log_:
        total = row_exp_sum(x, NULL, C, m)
        shift = <floating>log(total)
        for j in range(C):                       # simd: (x − max) is exact; one rounding after it
            y[j] = (x[j] - m) - shift
    else:
        total = row_exp_sum(x, y, C, m)
        scale = <floating>(1.0 / total)
        for j in range(C):                       # simd
            y[j] = y[j] * scale


cdef void softmax_all(const floating* x, floating* y, Py_ssize_t M, Py_ssize_t C, bint log_,
                      int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0 or C == 0:
        return
    if nt == 1:
        for i in range(M):
            softmax_row(x + i * C, y + i * C, C, log_)
    else:
        for i in prange(M, num_threads=nt, schedule="static"):
            softmax_row(x + i * C, y + i * C, C, log_)


def softmax_rows(x, y, Py_ssize_t M, Py_ssize_t C, bint log_, int n_threads):
    """(log_)softmax of each of the M rows of C values (C-contiguous arrays, checked by
    mlkernels/loss.py); y may be x."""
    cdef void* px = data_or_null(x)
    cdef void* py = data_or_null(y)
    cdef bint f64 = is_double(y)
    with nogil:
        if f64:
            softmax_all[double](<double*>px, <double*>py, M, C, log_, n_threads)
        else:
            softmax_all[float](<float*>px, <float*>py, M, C, log_, n_threads)


cdef void softmax_backward_row(const floating* g, const floating* y, floating* gx, Py_ssize_t C,
                               bint log_) noexcept nogil:
    """softmax:     gx = y·(g − Σ g·y);
    log_softmax: gx = g − e^y·Σ g   (y is the forward's output)."""
    cdef Py_ssize_t j
    cdef floating s
    if log_:
        s = <floating>sum_of(g, C)
        for j in range(C):                       # simd
            gx[j] = g[j] - v_exp(y[j]) * s
    else:
        s = <floating>dot_of(g, y, C)
        for j in range(C):                       # simd
            gx[j] = y[j] * (g[j] - s)


cdef void softmax_backward_all(const floating* g, const floating* y, floating* gx,
                               Py_ssize_t M, Py_ssize_t C, bint log_,
                               int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0 or C == 0:
        return
    if nt == 1:
        for i in range(M):
            softmax_backward_row(g + i * C, y + i * C, gx + i * C, C, log_)
    else:
        for i in prange(M, num_threads=nt, schedule="static"):
            softmax_backward_row(g + i * C, y + i * C, gx + i * C, C, log_)


def softmax_backward_rows(g, y, gx, Py_ssize_t M, Py_ssize_t C, bint log_, int n_threads):
    """The backward of softmax_rows (gx may be g)."""
    cdef void* pg = data_or_null(g)
    cdef void* py = data_or_null(y)
    cdef void* pgx = data_or_null(gx)
    cdef bint f64 = is_double(gx)
    with nogil:
        if f64:
            softmax_backward_all[double](<double*>pg, <double*>py, <double*>pgx, M, C, log_,
                                         n_threads)
        else:
            softmax_backward_all[float](<float*>pg, <float*>py, <float*>pgx, M, C, log_,
                                        n_threads)


# ------------------------------------------------------------------ cross-entropy

def check_targets(target, Py_ssize_t C, long long ignore_index):
    """The position of the first class index outside [0, C) that is not ignore_index, or -1.
    (target: a C-contiguous int64 array.)"""
    cdef const long long* t = <const long long*>cnp.PyArray_DATA(<cnp.ndarray>target)
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(<cnp.ndarray>target)
    for i in range(n):
        if t[i] != ignore_index and (t[i] < 0 or t[i] >= C):
            return i
    return -1


cdef double ce_all(const floating* x, const long long* t, double* losses, Py_ssize_t M,
                   Py_ssize_t C, long long ignore_index, double smoothing,
                   int n_threads) noexcept nogil:
    """Per-row losses into `losses` (if not NULL) and their sum, added in row order."""
    cdef Py_ssize_t i
    cdef double total = 0, loss
    cdef int nt = threads_for(M * C, n_threads)
    cdef double* per = losses
    if losses == NULL and nt > 1:
        per = <double*>malloc(M * sizeof(double))
        if per == NULL:
            nt = 1
    if nt == 1:
        for i in range(M):
            loss = ce_row(x + i * C, C, t[i], ignore_index, smoothing)
            if losses != NULL:
                losses[i] = loss
            total += loss
        return total
    for i in prange(M, num_threads=nt, schedule="static"):
        per[i] = ce_row(x + i * C, C, t[i], ignore_index, smoothing)
    for i in range(M):
        total += per[i]
    if per != losses:
        free(per)
    return total


def cross_entropy_rows(logits, target, losses, Py_ssize_t M, Py_ssize_t C,
                       long long ignore_index, double smoothing, int n_threads):
    """Σ_i losses[i], losses[i] = (1 − ε)·(lse − x[t]) + ε·(lse − mean(x)), lse = log Σ e^x
    (0 where ignored), each row's loss also written into `losses` (float64, or None).
    Targets are checked by check_targets first."""
    cdef void* px = data_or_null(logits)
    cdef const long long* pt = <const long long*>data_or_null(target)
    cdef double* pl = <double*>data_or_null(losses)
    cdef bint f64 = is_double(logits)
    cdef double total
    with nogil:
        if f64:
            total = ce_all[double](<double*>px, pt, pl, M, C, ignore_index, smoothing, n_threads)
        else:
            total = ce_all[float](<float*>px, pt, pl, M, C, ignore_index, smoothing, n_threads)
    return total


cdef double ce_row(const floating* x, Py_ssize_t C, long long t, long long ignore_index,
                   double smoothing) noexcept nogil:
    cdef floating m
    cdef double lse, nll
    if t == ignore_index:
        return 0
    m = max_of(x, C)
    lse = m + log(row_exp_sum(x, NULL, C, m))
    nll = lse - x[t]
    if smoothing == 0:
        return nll
    return smoothed(nll, lse - sum_of(x, C) / C, smoothing)


cdef void ce_backward_all(const floating* x, const long long* t, const double* scales,
                          double scale, floating* grad, Py_ssize_t M, Py_ssize_t C,
                          long long ignore_index, double smoothing,
                          int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0 or C == 0:
        return
    if nt == 1:
        for i in range(M):
            ce_backward_row(x + i * C, grad + i * C, C, t[i], ignore_index, smoothing,
                            scales[i] if scales != NULL else scale)
    else:
        for i in prange(M, num_threads=nt, schedule="static"):
            ce_backward_row(x + i * C, grad + i * C, C, t[i], ignore_index, smoothing,
                            scales[i] if scales != NULL else scale)


def cross_entropy_backward_rows(logits, target, scales, double scale, grad, Py_ssize_t M,
                                Py_ssize_t C, long long ignore_index, double smoothing,
                                int n_threads):
    """grad[i] = (softmax(x_i) − (1 − ε)·onehot(t_i) − ε/C)·s_i; 0 rows where ignored.
    s_i = scales[i] (float64 per row, for reduction "none"), or `scale` when scales is None."""
    cdef void* px = data_or_null(logits)
    cdef const long long* pt = <const long long*>data_or_null(target)
    cdef const double* ps = <const double*>data_or_null(scales)
    cdef void* pg = data_or_null(grad)
    cdef bint f64 = is_double(grad)
    with nogil:
        if f64:
            ce_backward_all[double](<double*>px, pt, ps, scale, <double*>pg, M, C, ignore_index,
                                    smoothing, n_threads)
        else:
            ce_backward_all[float](<float*>px, pt, ps, scale, <float*>pg, M, C, ignore_index,
                                   smoothing, n_threads)


def count_not_ignored(target, long long ignore_index):
    """How many targets are not ignore_index."""
    cdef const long long* t = <const long long*>cnp.PyArray_DATA(<cnp.ndarray>target)
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(<cnp.ndarray>target), count = 0
    for i in range(n):
        count += t[i] != ignore_index
    return count


cdef void ce_backward_row(const floating* x, floating* g, Py_ssize_t C, long long t,
                          long long ignore_index, double smoothing, double scale) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m, inv, off, s
    cdef double total
    if t == ignore_index:
        for j in range(C):
            g[j] = 0
        return
    m = max_of(x, C)
    total = row_exp_sum(x, g, C, m)              # g = e^(x − max) for now
    inv = <floating>(scale / total)
    off = <floating>(scale * smoothing / C)
    for j in range(C):                           # simd
        g[j] = g[j] * inv - off
    g[t] = g[t] - <floating>(scale * (1 - smoothing))


# ------------------------------------------------------------------ MSE and BCE with logits

cdef double mse_all(const floating* x, const floating* t, floating* per_element,
                    Py_ssize_t n) noexcept nogil:
    """Σ (x − t)²: squares block by block into per_element (or a stack buffer), then summed
    lane-parallel in double (sum_of), so both loops vectorize."""
    cdef floating buf[EXP_BLOCK]
    cdef floating* sq
    cdef Py_ssize_t i, start = 0, size
    cdef double total = 0
    cdef floating d
    while start < n:
        size = min(<Py_ssize_t>EXP_BLOCK, n - start)
        sq = per_element + start if per_element != NULL else buf
        for i in range(size):  # simd
            d = x[start + i] - t[start + i]
            sq[i] = d * d
        total += sum_of(sq, size)
        start += size
    return total


def mse_sum(x, t, per_element, Py_ssize_t n):
    """Σ (x − t)² in double; per_element (if not None) receives (x − t)²."""
    cdef void* px = data_or_null(x)
    cdef void* pt = data_or_null(t)
    cdef void* pp = data_or_null(per_element)
    cdef bint f64 = is_double(x)
    cdef double total
    with nogil:
        if f64:
            total = mse_all[double](<double*>px, <double*>pt, <double*>pp, n)
        else:
            total = mse_all[float](<float*>px, <float*>pt, <float*>pp, n)
    return total


cdef void mse_backward_all(const floating* x, const floating* t, const floating* g,
                           Py_ssize_t g_size, double scale, floating* out,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating s = <floating>(2 * scale), g0
    if g_size == 1 and n != 1:
        g0 = g[0] * s
        for i in range(n):  # simd
            out[i] = (x[i] - t[i]) * g0
    else:
        for i in range(n):  # simd
            out[i] = (x[i] - t[i]) * g[i] * s


def mse_backward(x, t, g, double scale, out, Py_ssize_t n):
    """out = 2(x − t)·g·scale (g: per element, or one value broadcast when g has size 1)."""
    cdef void* px = data_or_null(x)
    cdef void* pt = data_or_null(t)
    cdef void* pgr = data_or_null(g)
    cdef Py_ssize_t g_size = cnp.PyArray_SIZE(<cnp.ndarray>g)
    cdef void* po = data_or_null(out)
    cdef bint f64 = is_double(out)
    with nogil:
        if f64:
            mse_backward_all[double](<double*>px, <double*>pt, <double*>pgr, g_size, scale,
                                     <double*>po, n)
        else:
            mse_backward_all[float](<float*>px, <float*>pt, <float*>pgr, g_size, scale,
                                    <float*>po, n)


cdef inline floating softplus_neg(floating x) noexcept nogil:
    """log(1 + e^−x) = softplus(−x): never overflows."""
    return v_softplus(-x)


cdef double bce_all(const floating* x, const floating* t, floating* per_element,
                    Py_ssize_t n) noexcept nogil:
    """Σ (1 − t)·x + log(1 + e^−x): the terms computed block by block into per_element (or a
    stack buffer) by a loop that vectorizes, then summed (sum_of: lane-parallel, in double)."""
    cdef floating buf[EXP_BLOCK]
    cdef floating* v
    cdef Py_ssize_t i, start = 0, size
    cdef double total = 0
    while start < n:
        size = min(<Py_ssize_t>EXP_BLOCK, n - start)
        v = per_element + start if per_element != NULL else buf
        for i in range(size):  # simd
            v[i] = (1 - t[start + i]) * x[start + i] + softplus_neg(x[start + i])
        total += sum_of(v, size)
        start += size
    return total


def bce_logits_sum(x, t, per_element, Py_ssize_t n):
    """loss = (1 − t)·x + log(1 + e^−x) per element (stable for any |x|); returns the sum."""
    cdef void* px = data_or_null(x)
    cdef void* pt = data_or_null(t)
    cdef void* pp = data_or_null(per_element)
    cdef bint f64 = is_double(x)
    cdef double total
    with nogil:
        if f64:
            total = bce_all[double](<double*>px, <double*>pt, <double*>pp, n)
        else:
            total = bce_all[float](<float*>px, <float*>pt, <float*>pp, n)
    return total


cdef void bce_backward_all(const floating* x, const floating* t, const floating* g,
                           Py_ssize_t g_size, double scale, floating* out,
                           Py_ssize_t n) noexcept nogil:
    """out = (σ(x) − t)·g·scale, σ(x) computed from e^−|x| (v_sigmoid), g per element or one
    value broadcast. The broadcast gets its own loop: with `g[0] if g_size == 1 else g[i]` in
    the loop GCC made a masked load of g[i] and left the loop scalar."""
    cdef Py_ssize_t i
    cdef floating s = <floating>scale, g0
    if g_size == 1:
        g0 = g[0] * s
        for i in range(n):  # simd
            out[i] = (v_sigmoid(x[i]) - t[i]) * g0
    else:
        for i in range(n):  # simd
            out[i] = (v_sigmoid(x[i]) - t[i]) * g[i] * s


def bce_logits_backward(x, t, g, double scale, out, Py_ssize_t n):
    cdef void* px = data_or_null(x)
    cdef void* pt = data_or_null(t)
    cdef void* pgr = data_or_null(g)
    cdef Py_ssize_t g_size = cnp.PyArray_SIZE(<cnp.ndarray>g)
    cdef void* po = data_or_null(out)
    cdef bint f64 = is_double(out)
    with nogil:
        if f64:
            bce_backward_all[double](<double*>px, <double*>pt, <double*>pgr, g_size, scale,
                                     <double*>po, n)
        else:
            bce_backward_all[float](<float*>px, <float*>pt, <float*>pgr, g_size, scale,
                                    <float*>po, n)


# ------------------------------------------------------------------ fused linear + cross-entropy
# (its cimports here, with the code that needs them)
from libc.string cimport memcpy, memset

from mlkernels._blas cimport gemm_parallel


cdef inline double smoothed(double nll, double smooth, double eps) noexcept nogil:
    """(1 − ε)·nll + ε·smooth, written with one product (nll + ε·(smooth − nll)): the compiler
    may fuse a product and a sum into one FMA, and with one product there is one way to, so
    every kernel that calls this rounds the same (two products left it a choice, and the
    fused linear + cross-entropy's loss came out one ulp apart from cross_entropy's)."""
    return nll + eps * (smooth - nll)


# Scalar math (x (N, d), W (V, d), b (V,), target t (N,); the logits z = x·Wᵀ + b are never
# stored whole):
#     loss_i  = (1 − ε)·(lse_i − z_i[t_i]) + ε·(lse_i − mean_c z_i[c]),  lse_i = log Σ_c e^z_i[c]
#     dz_i    = (softmax(z_i) − (1 − ε)·onehot(t_i) − ε/V)·s_i      (s_i = dL/dloss_i; 0 if ignored)
#     grad_x  = dz·W,   grad_W = dzᵀ·x,   grad_b = Σ_i dz_i
# Why it is fast and small: the rows go through in chunks of R rows. Per chunk: one gemm makes
# the chunk's logits (R, V) in a scratch buffer that stays in cache; one pass per row over it
# (OpenMP over rows) computes the loss and, for the backward, turns the logits into dz in
# place; then gemm writes the chunk's grad_x rows and gemm with beta = 1 adds its dzᵀ·x into
# grad_W. So the (N, V) logits -- 512 MiB for N = 4096, V = 32k in float32 -- never exist:
# the extra memory is one chunk. BLAS is never called inside the parallel region.
# API: mlkernels/fused.py. Reference: mlkernels/reference/loss.py (linear_cross_entropy...).

cdef double lce_grad_row(floating* z, Py_ssize_t V, long long t, long long ignore_index,
                         double smoothing, double scale) noexcept nogil:
    """The row's loss; z (the row's logits) is replaced by dz = (softmax − (1 − ε)·onehot −
    ε/V)·scale, in place: the values it needs from z (max, z[t], Σ z) are read first. The
    loss is computed exactly as ce_row computes it (the same sums in the same order), so
    linear_cross_entropy_with_grad's loss is the bits of linear_cross_entropy's."""
    cdef Py_ssize_t j, start
    cdef floating m, zt, inv, off
    cdef double total = 0, lse, sum_z = 0, loss
    if t == ignore_index:
        memset(z, 0, V * sizeof(floating))
        return 0
    m = max_of(z, V)
    zt = z[t]
    if smoothing != 0:
        sum_z = sum_of(z, V)
    for j in range(V):  # simd
        z[j] = v_exp_nonpositive(z[j] - m)
    start = 0
    while start < V:                             # row_exp_sum's order: blocks of EXP_BLOCK
        total += sum_of(z + start, min(<Py_ssize_t>EXP_BLOCK, V - start))
        start += EXP_BLOCK
    lse = m + log(total)
    loss = lse - zt
    if smoothing != 0:
        loss = smoothed(loss, lse - sum_z / V, smoothing)
    inv = <floating>(scale / total)
    off = <floating>(scale * smoothing / V)
    for j in range(V):  # simd
        z[j] = z[j] * inv - off
    z[t] = z[t] - <floating>(scale * (1 - smoothing))
    return loss


cdef void column_sums_add(const floating* z, Py_ssize_t rows, Py_ssize_t V, double* acc,
                          Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """acc[c] += Σ_i z[i, c] for c in [c0, c1), rows in order (grad_b, in double)."""
    cdef Py_ssize_t i, c
    cdef const floating* row
    for i in range(rows):
        row = z + i * V
        for c in range(c0, c1):  # simd
            acc[c] = acc[c] + row[c]


cdef enum:
    LCE_COLUMN_BLOCK = 2048     # columns of grad_b per OpenMP work item


def linear_cross_entropy_chunks(
        cnp.ndarray x,              # IN  (N, d)
        cnp.ndarray weight,         # IN  (V, d)
        bias,                       # IN  (V,) or None
        cnp.ndarray target,         # IN  (N,) int64, in [0, V) or ignore_index
        losses,                     # OUT (N,) float64, each row's loss, or None
        row_scale,                  # IN  (N,) float64, dL/dloss_i; None: forward only
        grad_x,                     # OUT (N, d)   (with row_scale)
        grad_weight,                # OUT (V, d)   (with row_scale)
        grad_bias_acc,              # OUT (V,) float64, Σ_i dz_i, or None
        cnp.ndarray logits,         # scratch (R, V): one chunk
        long long ignore_index, double smoothing, int n_threads):
    """The fused loss (and, given row_scale, its gradients), R = logits.shape[0] rows at a
    time. Everything was validated by mlkernels/loss.py (C-contiguous arrays of x's float type
    where not said otherwise, shapes, targets in range). ndarrays, not typed memoryviews: no
    memoryview code in the module."""
    cdef Py_ssize_t N = cnp.PyArray_DIM(x, 0), d = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t V = cnp.PyArray_DIM(weight, 0), R = cnp.PyArray_DIM(logits, 0)
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* pw = cnp.PyArray_DATA(weight)
    cdef void* pb = data_or_null(bias)
    cdef const long long* pt = <const long long*>cnp.PyArray_DATA(target)
    cdef double* pl = <double*>data_or_null(losses)
    cdef const double* ps = <const double*>data_or_null(row_scale)
    cdef void* pgx = data_or_null(grad_x)
    cdef void* pgw = data_or_null(grad_weight)
    cdef double* pgb = <double*>data_or_null(grad_bias_acc)
    cdef void* pz = cnp.PyArray_DATA(logits)
    with nogil:
        if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT64:
            lce_chunks[double](<const double*>px, <const double*>pw, <const double*>pb, pt, pl,
                               ps, <double*>pgx, <double*>pgw, pgb, <double*>pz, N, d, V, R,
                               ignore_index, smoothing, n_threads)
        else:
            lce_chunks[float](<const float*>px, <const float*>pw, <const float*>pb, pt, pl,
                              ps, <float*>pgx, <float*>pgw, pgb, <float*>pz, N, d, V, R,
                              ignore_index, smoothing, n_threads)


cdef void lce_chunks(const floating* px, const floating* pw, const floating* bias,
                     const long long* target, double* losses, const double* row_scale,
                     floating* pgx, floating* pgw, double* pgb, floating* pz,
                     Py_ssize_t N, Py_ssize_t d, Py_ssize_t V, Py_ssize_t R,
                     long long ignore_index, double smoothing, int n_threads) noexcept nogil:
    """linear_cross_entropy_chunks's work; a NULL pointer is an array not given (gradients
    only when row_scale is given)."""
    cdef Py_ssize_t r0, rows, i, c, n_blocks
    cdef bint grads = row_scale != NULL, has_bias = bias != NULL
    cdef bint want_losses = losses != NULL, bias_grad = pgb != NULL
    cdef int nt
    cdef double loss
    if grads:
        if pgw != NULL and V and d:
            memset(pgw, 0, V * d * sizeof(floating))   # (overwritten by the first chunk's gemm;
        if bias_grad and V:                              #  stays 0 when N == 0)
            memset(pgb, 0, V * sizeof(double))
    if N == 0:
        return
    if V == 0:                                           # no classes: every target is ignored
        if want_losses:
            for i in range(N):
                losses[i] = 0
        if pgx != NULL and d:
            memset(pgx, 0, N * d * sizeof(floating))
        return
    r0 = 0
    while r0 < N:
        rows = min(R, N - r0)
        nt = n_threads if rows * V >= 32768 else 1
        # 1. the chunk's logits, z = x·Wᵀ + b (bias pre-filled, gemm accumulates onto it)
        if has_bias:
            for i in range(rows):
                memcpy(pz + i * V, bias, V * sizeof(floating))
        gemm_parallel(False, True, rows, V, d, px + r0 * d if d else NULL, d, pw, d,
                      1 if has_bias else 0, pz, V, n_threads)
        # 2. per row: the loss, and dz in place of z
        if not grads:
            for i in prange(rows, num_threads=nt, schedule="static"):
                losses[r0 + i] = ce_row(pz + i * V, V, target[r0 + i], ignore_index, smoothing)
        else:
            for i in prange(rows, num_threads=nt, schedule="static"):
                loss = lce_grad_row(pz + i * V, V, target[r0 + i], ignore_index, smoothing,
                                    row_scale[r0 + i])
                if want_losses:
                    losses[r0 + i] = loss
            # 3. grad_x rows = dz·W;  grad_W += dzᵀ·x;  grad_b += Σ_rows dz
            if d:
                gemm_parallel(False, False, rows, d, V, pz, V, pw, d, 0, pgx + r0 * d, d,
                              n_threads)
                gemm_parallel(True, False, V, d, rows, pz, V, px + r0 * d, d,
                              0 if r0 == 0 else 1, pgw, d, n_threads)
            if bias_grad:
                n_blocks = (V + LCE_COLUMN_BLOCK - 1) // LCE_COLUMN_BLOCK
                for c in prange(n_blocks, num_threads=nt, schedule="static"):
                    column_sums_add(pz, rows, V, pgb, c * LCE_COLUMN_BLOCK,
                                    min(V, (c + 1) * LCE_COLUMN_BLOCK))
        r0 += rows


# ------------------------------------------------------------------ 16-bit storage

cdef enum:
    HALF_BLOCK = 4096          # float32 values of a block of rows widened at once (16 KiB: L1)
    HALF_SOFTMAX = 0           # out = (log_)softmax(a)
    HALF_SOFTMAX_BACKWARD = 1  # out = (log_)softmax_backward(grad_out a, y b)
    HALF_CE = 2                # losses[i] = cross-entropy of row a_i
    HALF_CE_BACKWARD = 3       # out = its gradient


def half_rows(int op, int kind, a, b, out, target, losses, scales, double scale,
              Py_ssize_t M, Py_ssize_t C, bint log_, long long ignore_index, double smoothing,
              int n_threads):
    """The row kernels above on 16-bit rows (storage kind of _half.h: 1 bfloat16, 2 float16):
    op HALF_* on the M rows of C values of a (and b), C-contiguous arrays checked by
    mlkernels/loss.py; out 16-bit (may be a); losses float64 (M,), or None when only the sum
    is wanted. Returns Σ losses (cross-entropy) added in row order, else 0."""
    cdef int nt = threads_for(M * C, n_threads), t
    cdef Py_ssize_t block = max(<Py_ssize_t>1, HALF_BLOCK // max(C, <Py_ssize_t>1)), i
    cdef Py_ssize_t per_thread = (3 * block * C + 16) // 16 * 16
    cdef double total = 0
    # a large softmax output is written with streaming stores, as the norms' (_stream.h)
    cdef bint stream = op == HALF_SOFTMAX and M * C * 2 >= stream_from()
    if M == 0:
        return 0.0
    nt = <int>min(<Py_ssize_t>nt, M)
    cdef float* work = <float*>malloc(nt * per_thread * sizeof(float) + 64)
    cdef double* per = <double*>data_or_null(losses)
    if op == HALF_CE and per == NULL:
        per = <double*>malloc(M * sizeof(double) + 8)
    if work == NULL or (op == HALF_CE and per == NULL):
        free(work)
        if per != <double*>data_or_null(losses):
            free(per)
        raise MemoryError()
    cdef float* aligned = <float*>((<size_t>work + 63) & ~(<size_t>63))
    cdef const uint16_t* pa = <const uint16_t*>data_or_null(a)
    cdef const uint16_t* pb = <const uint16_t*>data_or_null(b)
    cdef uint16_t* po = <uint16_t*>data_or_null(out)
    cdef const long long* pt = <const long long*>data_or_null(target)
    cdef const double* ps = <const double*>data_or_null(scales)
    with nogil:
        if nt == 1:
            half_block_rows(op, kind, pa, pb, po, pt, per, ps, scale, 0, M, C, log_,
                            ignore_index, smoothing, aligned, block, stream)
        else:
            for t in prange(nt, num_threads=nt, schedule="static"):
                half_block_rows(op, kind, pa, pb, po, pt, per, ps, scale, M * t // nt,
                                M * (t + 1) // nt, C, log_, ignore_index, smoothing,
                                aligned + t * per_thread, block, stream)
        if op == HALF_CE:
            for i in range(M):
                total += per[i]
    free(work)
    if per != <double*>data_or_null(losses):
        free(per)
    return total


cdef void half_block_rows(int op, int kind, const uint16_t* a, const uint16_t* b,
                          uint16_t* out, const long long* target, double* losses,
                          const double* scales, double scale, Py_ssize_t first, Py_ssize_t end,
                          Py_ssize_t C, bint log_, long long ignore_index, double smoothing,
                          float* work, Py_ssize_t block, bint stream) noexcept nogil:
    """Rows [first, end): blocks of `block` rows widened to float32 (in cache), the float32
    row kernel on each row, the block's results rounded once on store.

    Scalar math: out_i = round16(kernel_float32(widen(a_i)[, widen(b_i)])): the float32
    result, rounded -- the same float32 operations on the same values, in the same order;
    cross-entropy's losses stay in double, as float32's.
    Why it is fast: 2 bytes read and written per value in place of 4. A block of at most
    HALF_BLOCK floats is widened into L1; softmax runs the float32 row kernel from it into a
    second buffer (not in place: the same path as the float32 kernel's, NaN signs included)
    and rounds that into out (streamed when out is large); cross-entropy reads only the
    rows it does not ignore; the backwards widen a block first, then run the float32 row
    kernel. Reference: mlkernels/reference/loss.py.
    """
    cdef float* xs = work
    cdef float* ys = work + block * C
    cdef float* zs = work + 2 * block * C
    cdef Py_ssize_t r0 = first, m, i, r
    while r0 < end:
        m = min(block, end - r0)
        if op == HALF_SOFTMAX:
            mlk_widen(kind, a + r0 * C, xs, m * C)
            for i in range(m):
                softmax_row(<const float*>(xs + i * C), ys + i * C, C, log_)
            mlk_narrow_to(kind, ys, out + r0 * C, m * C, stream)
            r0 += m
            continue
        if op == HALF_CE:                       # an ignored row is not read
            for i in range(m):
                r = r0 + i
                if target[r] == ignore_index:
                    losses[r] = 0
                else:
                    mlk_widen(kind, a + r * C, xs + i * C, C)
                    losses[r] = ce_row(<const float*>(xs + i * C), C, target[r], ignore_index,
                                       smoothing)
            r0 += m
            continue
        mlk_widen(kind, a + r0 * C, xs, m * C)
        if op == HALF_SOFTMAX_BACKWARD:
            mlk_widen(kind, b + r0 * C, zs, m * C)
        for i in range(m):
            r = r0 + i
            if op == HALF_SOFTMAX_BACKWARD:
                softmax_backward_row(<const float*>(xs + i * C), <const float*>(zs + i * C),
                                     ys + i * C, C, log_)
            else:
                ce_backward_row(<const float*>(xs + i * C), ys + i * C, C, target[r],
                                ignore_index, smoothing,
                                scales[r] if scales != NULL else scale)
        mlk_narrow(kind, ys, out + r0 * C, m * C)
        r0 += m
    if stream:
        mlk_stream_fence()
