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
* exp is the vectorized float32 exp of _vecmath.h (libm for float64); max, sums and dot
  products are the lane-parallel reductions of _reduce.pxd, in double: a row's passes all
  vectorize (a plain running sum would keep each loop containing it scalar).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log, INFINITY, NAN

from mlkernels._act cimport v_exp, v_sigmoid, v_softplus
from mlkernels._reduce cimport sum_of, dot_of, max_of

import numpy as np

cdef enum:
    SERIAL_BELOW = 32768


cdef inline int threads_for(Py_ssize_t total, int n_threads) noexcept nogil:
    return 1 if total < SERIAL_BELOW else n_threads


cdef enum:
    EXP_BLOCK = 256            # exponentials buffered on the stack when only their sum is needed
    SUM_BLOCK = 256            # per-element losses buffered on the stack before their sum


cdef double row_exp_sum(const floating* x, floating* e, Py_ssize_t C, floating m) noexcept nogil:
    """e = exp(x − m) and returns Σ e in double. e may be NULL (only the sum is wanted): the
    exponentials then go through a small stack buffer. Computing them in one loop and summing
    in another keeps both vectorized (see _reduce.pxd)."""
    cdef floating buf[EXP_BLOCK]
    cdef Py_ssize_t j, start = 0, size
    cdef double total = 0
    if e != NULL:
        for j in range(C):                       # simd float32 (float64: libm exp)
            e[j] = v_exp(x[j] - m)
        return sum_of(e, C)
    while start < C:
        size = min(<Py_ssize_t>EXP_BLOCK, C - start)
        for j in range(size):                    # simd float32 (float64: libm exp)
            buf[j] = v_exp(x[start + j] - m)
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


def softmax_rows(const floating[:, ::1] x, floating[:, ::1] y, bint log_, int n_threads):
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0 or C == 0:
        return
    cdef const floating* px = &x[0, 0]
    cdef floating* py = &y[0, 0]
    with nogil:
        for i in prange(M, num_threads=nt, schedule="static"):
            softmax_row(px + i * C, py + i * C, C, log_)


cdef void softmax_backward_row(const floating* g, const floating* y, floating* gx, Py_ssize_t C,
                               bint log_) noexcept nogil:
    """softmax:     gx = y·(g − Σ g·y);
    log_softmax: gx = g − e^y·Σ g   (y is the forward's output)."""
    cdef Py_ssize_t j
    cdef floating s
    if log_:
        s = <floating>sum_of(g, C)
        for j in range(C):                       # simd float32 (float64: libm exp)
            gx[j] = g[j] - v_exp(y[j]) * s
    else:
        s = <floating>dot_of(g, y, C)
        for j in range(C):                       # simd
            gx[j] = y[j] * (g[j] - s)


def softmax_backward_rows(const floating[:, ::1] g, const floating[:, ::1] y,
                          floating[:, ::1] gx, bint log_, int n_threads):
    cdef Py_ssize_t M = y.shape[0], C = y.shape[1], i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0 or C == 0:
        return
    cdef const floating* pg = &g[0, 0]
    cdef const floating* py = &y[0, 0]
    cdef floating* pgx = &gx[0, 0]
    with nogil:
        for i in prange(M, num_threads=nt, schedule="static"):
            softmax_backward_row(pg + i * C, py + i * C, pgx + i * C, C, log_)


# ------------------------------------------------------------------ cross-entropy

def cross_entropy_rows(const floating[:, ::1] logits, const long long[::1] target,
                       double[::1] losses, long long ignore_index, double smoothing,
                       int n_threads):
    """losses[i] = (1 − ε)·(lse − x[t]) + ε·(lse − mean(x)), lse = log Σ e^x; 0 if ignored."""
    cdef Py_ssize_t M = logits.shape[0], C = logits.shape[1], i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0:
        return
    cdef const floating* px = &logits[0, 0]
    with nogil:
        for i in prange(M, num_threads=nt, schedule="static"):
            losses[i] = ce_row(px + i * C, C, target[i], ignore_index, smoothing)


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
    return (1 - smoothing) * nll + smoothing * (lse - sum_of(x, C) / C)


def cross_entropy_backward_rows(const floating[:, ::1] logits, const long long[::1] target,
                                const double[::1] scale, floating[:, ::1] grad,
                                long long ignore_index, double smoothing, int n_threads):
    """grad[i] = (softmax(x_i) − (1 − ε)·onehot(t_i) − ε/C)·scale[i]; 0 rows where ignored."""
    cdef Py_ssize_t M = logits.shape[0], C = logits.shape[1], i
    cdef int nt = threads_for(M * C, n_threads)
    if M == 0 or C == 0:
        return
    cdef const floating* px = &logits[0, 0]
    cdef floating* pg = &grad[0, 0]
    with nogil:
        for i in prange(M, num_threads=nt, schedule="static"):
            ce_backward_row(px + i * C, pg + i * C, C, target[i], ignore_index, smoothing,
                            scale[i])


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

def mse_sum(const floating[::1] x, const floating[::1] t, floating[::1] per_element):
    """Σ (x − t)² in double; per_element (if given) receives (x − t)².
    Block by block: one loop writes the squares (into per_element, or a stack buffer), another
    sums them (sum_of): a running `total += d·d` in the first loop would be a serial chain of
    double additions and keep it scalar."""
    cdef Py_ssize_t n = x.shape[0], i, start = 0, size
    cdef double total = 0
    cdef floating d
    cdef floating buf[SUM_BLOCK]
    cdef const floating* px = &x[0] if n else NULL
    cdef const floating* pt = &t[0] if n else NULL
    cdef floating* out = &per_element[0] if per_element is not None and n else NULL
    cdef floating* dst
    with nogil:
        while start < n:
            size = min(<Py_ssize_t>SUM_BLOCK, n - start)
            dst = out + start if out != NULL else buf
            for i in range(size):                # simd
                d = px[start + i] - pt[start + i]
                dst[i] = d * d
            total += sum_of(dst, size)
            start += size
    return total


def mse_backward(const floating[::1] x, const floating[::1] t, const floating[::1] g,
                 double scale, floating[::1] out):
    """out = 2(x − t)·g·scale (g: per element, or one value broadcast when g has size 1)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating s = <floating>(2 * scale), g0
    with nogil:
        if g.shape[0] == 1 and n != 1:
            g0 = g[0] * s
            for i in range(n):                   # simd
                out[i] = (x[i] - t[i]) * g0
        else:
            for i in range(n):                   # simd
                out[i] = (x[i] - t[i]) * g[i] * s


cdef inline floating softplus_neg(floating x) noexcept nogil:
    """log(1 + e^−x) = softplus(−x): never overflows."""
    return v_softplus(-x)


def bce_logits_sum(const floating[::1] x, const floating[::1] t, floating[::1] per_element):
    """loss = (1 − t)·x + log(1 + e^−x) per element (stable for any |x|); returns the sum.
    Block by block, the losses written by one loop and summed by another, as in mse_sum."""
    cdef Py_ssize_t n = x.shape[0], i, start = 0, size
    cdef double total = 0
    cdef floating buf[SUM_BLOCK]
    cdef const floating* px = &x[0] if n else NULL
    cdef const floating* pt = &t[0] if n else NULL
    cdef floating* out = &per_element[0] if per_element is not None and n else NULL
    cdef floating* dst
    with nogil:
        while start < n:
            size = min(<Py_ssize_t>SUM_BLOCK, n - start)
            dst = out + start if out != NULL else buf
            for i in range(size):                # simd float32 (float64: libm exp, log1p)
                dst[i] = (1 - pt[start + i]) * px[start + i] + softplus_neg(px[start + i])
            total += sum_of(dst, size)
            start += size
    return total


def bce_logits_backward(const floating[::1] x, const floating[::1] t, const floating[::1] g,
                        double scale, floating[::1] out):
    """out = (σ(x) − t)·g·scale, σ(x) computed from e^−|x| (v_sigmoid), g per element or one
    value broadcast. The broadcast gets its own loop: with `g[0] if g.shape[0] == 1 else g[i]`
    in the loop GCC made a masked load of g[i] and left the loop scalar."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating s = <floating>scale, g0
    with nogil:
        if g.shape[0] == 1 and n != 1:
            g0 = g[0] * s
            for i in range(n):                   # simd float32 (float64: libm exp)
                out[i] = (v_sigmoid(x[i]) - t[i]) * g0
        else:
            for i in range(n):                   # simd float32 (float64: libm exp)
                out[i] = (v_sigmoid(x[i]) - t[i]) * g[i] * s
