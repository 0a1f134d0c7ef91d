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

from mlkernels._act cimport v_abs, v_exp, v_softplus
from mlkernels._reduce cimport sum_of, dot_of, max_of

import numpy as np

cdef enum:
    SERIAL_BELOW = 32768


cdef inline int threads_for(Py_ssize_t total, int n_threads) noexcept nogil:
    return 1 if total < SERIAL_BELOW else n_threads


cdef enum:
    EXP_BLOCK = 256            # exponentials buffered on the stack when only their sum is needed


cdef double row_exp_sum(const floating* x, floating* e, Py_ssize_t C, floating m) noexcept nogil:
    """e = exp(x − m) and returns Σ e in double. e may be NULL (only the sum is wanted): the
    exponentials then go through a small stack buffer. Computing them in one loop and summing
    in another keeps both vectorized (see _reduce.pxd)."""
    cdef floating buf[EXP_BLOCK]
    cdef Py_ssize_t j, start = 0, size
    cdef double total = 0
    if e != NULL:
        for j in range(C):
            e[j] = v_exp(x[j] - m)
        return sum_of(e, C)
    while start < C:
        size = min(<Py_ssize_t>EXP_BLOCK, C - start)
        for j in range(size):
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
        for j in range(C):                       # (x − max) is exact; one rounding after it
            y[j] = (x[j] - m) - shift
    else:
        total = row_exp_sum(x, y, C, m)
        scale = <floating>(1.0 / total)
        for j in range(C):
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
        for j in range(C):
            gx[j] = g[j] - v_exp(y[j]) * s
    else:
        s = <floating>dot_of(g, y, C)
        for j in range(C):
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
    return smoothed(nll, lse - sum_of(x, C) / C, smoothing)


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
    for j in range(C):
        g[j] = g[j] * inv - off
    g[t] = g[t] - <floating>(scale * (1 - smoothing))


# ------------------------------------------------------------------ MSE and BCE with logits

def mse_sum(const floating[::1] x, const floating[::1] t, floating[::1] per_element):
    """Σ (x − t)² in double; per_element (if given) receives (x − t)²."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef double total = 0
    cdef floating d
    with nogil:
        if per_element is not None:
            for i in range(n):
                d = x[i] - t[i]
                per_element[i] = d * d
                total += d * d
        else:
            for i in range(n):
                d = x[i] - t[i]
                total += d * d
    return total


def mse_backward(const floating[::1] x, const floating[::1] t, const floating[::1] g,
                 double scale, floating[::1] out):
    """out = 2(x − t)·g·scale (g: per element, or one value broadcast when g has size 1)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating s = <floating>(2 * scale), g0
    with nogil:
        if g.shape[0] == 1 and n != 1:
            g0 = g[0] * s
            for i in range(n):
                out[i] = (x[i] - t[i]) * g0
        else:
            for i in range(n):
                out[i] = (x[i] - t[i]) * g[i] * s


cdef inline floating softplus_neg(floating x) noexcept nogil:
    """log(1 + e^−x) = softplus(−x): never overflows."""
    return v_softplus(-x)


def bce_logits_sum(const floating[::1] x, const floating[::1] t, floating[::1] per_element):
    """loss = (1 − t)·x + log(1 + e^−x) per element (stable for any |x|); returns the sum."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef double total = 0
    cdef floating v
    with nogil:
        for i in range(n):
            v = (1 - t[i]) * x[i] + softplus_neg(x[i])
            if per_element is not None:
                per_element[i] = v
            total += v
    return total


def bce_logits_backward(const floating[::1] x, const floating[::1] t, const floating[::1] g,
                        double scale, floating[::1] out):
    """out = (σ(x) − t)·g·scale, σ(x) = 1/(1 + e^−x) computed from e^−|x|."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating z, sig, s = <floating>scale, gi
    with nogil:
        for i in range(n):
            z = v_exp(-v_abs(x[i]))
            sig = 1 / (1 + z) if x[i] >= 0 else z / (1 + z)
            gi = g[0] if g.shape[0] == 1 else g[i]
            out[i] = (sig - t[i]) * gi * s


# ------------------------------------------------------------------ fused linear + cross-entropy
# (its cimports here, with the code that needs them)
from libc.string cimport memcpy, memset

from mlkernels._blas cimport gemm


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
        z[j] = v_exp(z[j] - m)
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
        const floating[:, ::1] x,             # IN  (N, d)
        const floating[:, ::1] weight,        # IN  (V, d)
        const floating[::1] bias,             # IN  (V,) or None
        const long long[::1] target,          # IN  (N,) in [0, V) or ignore_index
        double[::1] losses,                   # OUT (N,) each row's loss, or None
        const double[::1] row_scale,          # IN  (N,) dL/dloss_i; None: forward only
        floating[:, ::1] grad_x,              # OUT (N, d)   (with row_scale)
        floating[:, ::1] grad_weight,         # OUT (V, d)   (with row_scale)
        double[::1] grad_bias_acc,            # OUT (V,) Σ_i dz_i in double, or None
        floating[:, ::1] logits,              # scratch (R, V): one chunk
        long long ignore_index, double smoothing, int n_threads):
    """The fused loss (and, given row_scale, its gradients), R = logits.shape[0] rows at a
    time. Everything was validated by mlkernels/loss.py (shapes, targets in range)."""
    cdef Py_ssize_t N = x.shape[0], d = x.shape[1], V = weight.shape[0]
    cdef Py_ssize_t R = logits.shape[0], r0, rows, i, c, n_blocks
    cdef bint grads = row_scale is not None, has_bias = bias is not None
    cdef bint want_losses = losses is not None, bias_grad = grad_bias_acc is not None
    cdef int nt
    cdef const floating* px = &x[0, 0] if N and d else NULL
    cdef const floating* pw = &weight[0, 0] if V and d else NULL
    cdef floating* pz = &logits[0, 0] if R and V else NULL
    cdef floating* pgx = &grad_x[0, 0] if grads and N and d else NULL
    cdef floating* pgw = &grad_weight[0, 0] if grads and V and d else NULL
    cdef double* pgb = &grad_bias_acc[0] if bias_grad and V else NULL
    cdef double loss
    if grads:
        if pgw != NULL:
            memset(pgw, 0, V * d * sizeof(floating))   # (overwritten by the first chunk's gemm;
        if pgb != NULL:                                  #  stays 0 when N == 0)
            memset(pgb, 0, V * sizeof(double))
    if N == 0:
        return
    if V == 0:                                           # no classes: every target is ignored
        if want_losses:
            for i in range(N):
                losses[i] = 0
        if pgx != NULL:
            memset(pgx, 0, N * d * sizeof(floating))
        return
    with nogil:
        r0 = 0
        while r0 < N:
            rows = min(R, N - r0)
            nt = n_threads if rows * V >= 32768 else 1
            # 1. the chunk's logits, z = x·Wᵀ + b (bias pre-filled, gemm accumulates onto it)
            if has_bias:
                for i in range(rows):
                    memcpy(pz + i * V, &bias[0], V * sizeof(floating))
            gemm(False, True, rows, V, d, px + r0 * d if d else NULL, d, pw, d,
                 1 if has_bias else 0, pz, V)
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
                    gemm(False, False, rows, d, V, pz, V, pw, d, 0, pgx + r0 * d, d)
                    gemm(True, False, V, d, rows, pz, V, px + r0 * d, d, 0 if r0 == 0 else 1,
                         pgw, d)
                if bias_grad:
                    n_blocks = (V + LCE_COLUMN_BLOCK - 1) // LCE_COLUMN_BLOCK
                    for c in prange(n_blocks, num_threads=nt, schedule="static"):
                        column_sums_add(pz, rows, V, pgb, c * LCE_COLUMN_BLOCK,
                                        min(V, (c + 1) * LCE_COLUMN_BLOCK))
            r0 += rows
