"""Scaled dot-product attention, forward and backward, in the manner of FlashAttention.

Scalar math, for one head: q (Tq, d), k (Tk, d), v (Tk, dv); query i sees the keys j < n_i,
n_i = min(i + 1, Tk) when causal (torch's upper-left-aligned mask), else n_i = Tk:

    s_ij   = scale · Σ_c q_ic k_jc                      the scores
    lse_i  = log Σ_{j<n_i} e^(s_ij)                     saved for the backward
    p_ij   = e^(s_ij − lse_i)                           the attention probabilities
    out_ic = Σ_{j<n_i} p_ij v_jc

and given dO = grad_out:

    D_i    = Σ_c dO_ic out_ic
    dp_ij  = Σ_c dO_ic v_jc
    ds_ij  = p_ij (dp_ij − D_i)                         the softmax backward
    dq_ic  = scale · Σ_{j<n_i} ds_ij k_jc
    dk_jc  = scale · Σ_{i sees j} ds_ij q_ic
    dv_jc  = Σ_{i sees j} p_ij dO_ic

(mlkernels/reference/attention.py computes exactly this in float64 NumPy.)

Why it is fast, and small
-------------------------
* The (Tq, Tk) matrices s and p never exist. The forward takes a block of BQ query rows and
  walks over blocks of BK keys: S = Q·Kᵀ for the block pair (a tile in L1), then the *online
  softmax* -- each row keeps its running maximum m and sum l, and when a block raises the
  maximum, the row's partial output is rescaled by e^(m_old − m_new) -- then O += P·V. After
  the last block, out = O / l and lse = m + log l. (In base 2: log2 e is folded into q's
  scale, and the exponentials are 2^x, mlk_attn_exp2_nonpos.) Memory: the inputs, the
  outputs, and a workspace per thread of a few tiles plus one head's K and V (O(T·d)).
* The backward recomputes P = e^(S − lse) block by block instead of storing it, needs
  D = rowsum(dO ∘ out), and accumulates dq, dk, dv (FlashAttention-2's order: a block of keys
  outside, its dk and dv rows in a small buffer, every block of queries inside).
* Causal: blocks of keys entirely after a block's last query are skipped, not masked (half
  the work); in the blocks on the diagonal the products use, per row, only the keys that row
  sees (_attention.h says why: NaN in an unseen value must not leak in).
* The products are register-blocked micro-kernels in C (_attention.h) that GCC vectorizes,
  on operands packed once per head or query block (the forward's Qᵀ and the backward's Kᵀ,
  Vᵀ transposed; every B operand padded to the micro-kernel's width; q pre-multiplied by the
  scale). No BLAS inside the threads.
* The forward computes its scores transposed (keys x queries), so that the online softmax's
  row maxima and sums are vertical vector operations (mlk_attn_softmax_block).
* Threads take work items one at a time, in increasing order: forward, (head, query block);
  backward, whole heads when there are at least as many heads as threads, else two passes --
  (head, key block) items for dk and dv, then (head, query block) items for dq -- which
  recompute the same tiles and add in the same order. A thread keeps the last head it packed
  and its items come in order, so it packs each head once. Each result is computed by one
  fixed sequence of operations whichever thread runs it: the same bits for any thread count.
* Accuracy: float32 inputs are computed in float32 (as torch's CPU flash attention), with the
  row sums l and the D_i in double; the tests give the error bounds this reaches.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport log, INFINITY
from libc.string cimport memset

cimport numpy as cnp
import numpy as np
import threading

cnp.import_array()

cdef extern from "_attention.h" nogil:
    int MR "MLK_ATTN_MR"
    int NR_F32 "MLK_ATTN_NR_F32"
    int NR_F64 "MLK_ATTN_NR_F64"
    int ALL "MLK_ATTN_ALL"
    int ROW_QUERY "MLK_ATTN_ROW_QUERY"
    int ROW_KEY "MLK_ATTN_ROW_KEY"
    void mlk_attn_gemm_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                           Py_ssize_t a_row, Py_ssize_t a_inner, const float* B, Py_ssize_t ldb,
                           float* C, Py_ssize_t ldc, int accumulate, int mask, Py_ssize_t off)
    void mlk_attn_gemm_f64(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* A,
                           Py_ssize_t a_row, Py_ssize_t a_inner, const double* B,
                           Py_ssize_t ldb, double* C, Py_ssize_t ldc, int accumulate, int mask,
                           Py_ssize_t off)
    void mlk_attn_softmax_block_f32(float* st, Py_ssize_t ld, Py_ssize_t nk, Py_ssize_t nq,
                                    int causal, Py_ssize_t off, float* m, double* l,
                                    float* alpha, float* block_max, float* block_sum)
    void mlk_attn_softmax_block_f64(double* st, Py_ssize_t ld, Py_ssize_t nk, Py_ssize_t nq,
                                    int causal, Py_ssize_t off, double* m, double* l,
                                    double* alpha, double* block_max, double* block_sum)
    void mlk_attn_rescale_rows_f32(float* acc, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
                                   const float* alpha)
    void mlk_attn_rescale_rows_f64(double* acc, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
                                   const double* alpha)
    void mlk_attn_finish_row_f32(const float* acc, float* out, Py_ssize_t n, double l)
    void mlk_attn_finish_row_f64(const double* acc, double* out, Py_ssize_t n, double l)
    void mlk_attn_probs_row_f32(float* s, Py_ssize_t n, Py_ssize_t visible, float lse)
    void mlk_attn_probs_row_f64(double* s, Py_ssize_t n, Py_ssize_t visible, double lse)
    void mlk_attn_dscores_row_f32(const float* p, float* dp, Py_ssize_t n, Py_ssize_t visible,
                                  float D)
    void mlk_attn_dscores_row_f64(const double* p, double* dp, Py_ssize_t n,
                                  Py_ssize_t visible, double D)
    double mlk_attn_row_dot_f32(const float* a, const float* b, Py_ssize_t n)
    double mlk_attn_row_dot_f64(const double* a, const double* b, Py_ssize_t n)


cdef double LOG2E = 1.4426950408889634       # log2(e): the forward's scores are in base 2
cdef double LN2 = 0.6931471805599453

cdef enum:
    # Rows of queries and of keys per block: the tiles S and P (BQ x BK) and a block of
    # Q, K or V (64 x d) are 16 KiB each in float32 with d = 64, so that a block pair's
    # operands stay in L1/L2 (32 KiB / 1 MiB per core here). Multiples of every MR and NR.
    BQ = 64
    BK = 64
    TRANSPOSE_ROWS = 16      # rows of K (or V) transposed together: whole cache lines written
    SERIAL_BELOW = 1 << 20   # multiply-adds: below this, one thread (a parallel region costs µs)


# ------------------------------------------------------------------ fused-type faces of the C

cdef inline Py_ssize_t nr_of(floating dummy) noexcept nogil:
    """The micro-kernel's tile width for this type: B operands are padded to a multiple."""
    if floating is float:
        return NR_F32
    else:
        return NR_F64


cdef inline void gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating* A,
                      Py_ssize_t a_row, Py_ssize_t a_inner, const floating* B, Py_ssize_t ldb,
                      floating* C, Py_ssize_t ldc, int accumulate, int mask,
                      Py_ssize_t off) noexcept nogil:
    """C (M x N) (+)= A·B with A[r, p] = A[r·a_row + p·a_inner], restricted by the causal
    ``mask`` on diagonal tiles (_attention.h). M a multiple of MR, N of the tile width."""
    if floating is float:
        mlk_attn_gemm_f32(M, N, K, A, a_row, a_inner, B, ldb, C, ldc, accumulate, mask, off)
    else:
        mlk_attn_gemm_f64(M, N, K, A, a_row, a_inner, B, ldb, C, ldc, accumulate, mask, off)


cdef inline void softmax_block(floating* st, Py_ssize_t ld, Py_ssize_t nk, Py_ssize_t nq,
                               bint causal, Py_ssize_t off, floating* m, double* l,
                               floating* alpha, floating* block_max,
                               floating* block_sum) noexcept nogil:
    if floating is float:
        mlk_attn_softmax_block_f32(st, ld, nk, nq, causal, off, m, l, alpha, block_max,
                                   block_sum)
    else:
        mlk_attn_softmax_block_f64(st, ld, nk, nq, causal, off, m, l, alpha, block_max,
                                   block_sum)


cdef inline void rescale_rows(floating* acc, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
                              const floating* alpha) noexcept nogil:
    if floating is float:
        mlk_attn_rescale_rows_f32(acc, ld, rows, n, alpha)
    else:
        mlk_attn_rescale_rows_f64(acc, ld, rows, n, alpha)


cdef inline void finish_row(const floating* acc, floating* out, Py_ssize_t n,
                            double l) noexcept nogil:
    if floating is float:
        mlk_attn_finish_row_f32(acc, out, n, l)
    else:
        mlk_attn_finish_row_f64(acc, out, n, l)


cdef inline void probs_row(floating* s, Py_ssize_t n, Py_ssize_t visible,
                           floating lse) noexcept nogil:
    if floating is float:
        mlk_attn_probs_row_f32(s, n, visible, lse)
    else:
        mlk_attn_probs_row_f64(s, n, visible, lse)


cdef inline void dscores_row(const floating* p, floating* dp, Py_ssize_t n, Py_ssize_t visible,
                             floating D) noexcept nogil:
    if floating is float:
        mlk_attn_dscores_row_f32(p, dp, n, visible, D)
    else:
        mlk_attn_dscores_row_f64(p, dp, n, visible, D)


cdef inline double row_dot(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return mlk_attn_row_dot_f32(a, b, n)
    else:
        return mlk_attn_row_dot_f64(a, b, n)


# ------------------------------------------------------------------ the problem and its layout

cdef struct Heads:
    # One input of shape (..., T, c): row t of head n starts at data + offsets[n] + t·row_stride
    # (in elements); the c values of a row are contiguous. (Any strides of the leading axes
    # and of T: the transposed (B, T, H, d) views a transformer passes are read in place.)
    const void* data
    const long long* offsets
    Py_ssize_t row_stride


cdef struct Problem:
    Heads q, k, v, grad_out, out          # grad_out and out: backward only
    const void* lse                       # backward: (N, Tq), contiguous
    void* res_out                         # forward:  out (N, Tq, dv), lse (N, Tq)
    void* res_lse
    void* res_dq                          # backward: (N, Tq, d), (N, Tk, d), (N, Tk, dv)
    void* res_dk
    void* res_dv
    Py_ssize_t N, Tq, Tk, d, dv           # heads, queries, keys, head sizes
    Py_ssize_t nqb, nkb                   # blocks of BQ queries, of BK keys
    Py_ssize_t Tq_pad, Tk_pad, d_pad, dv_pad
    Py_ssize_t ld_t                       # row length of the transposed Kᵀ, Vᵀ (>= Tk_pad)
    double scale
    bint causal


cdef enum Kind:                           # what a work item is
    FORWARD = 0                           # head · nqb + query block
    BACKWARD_HEADS = 1                    # head
    BACKWARD_KEYS = 2                     # head · nkb + key block
    BACKWARD_QUERIES = 3                  # head · nqb + query block


cdef inline Py_ssize_t round_up(Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    return (n + m - 1) // m * m


cdef inline const floating* row_of(Heads* h, Py_ssize_t n, Py_ssize_t t,
                                   floating dummy) noexcept nogil:
    return <const floating*>h.data + h.offsets[n] + t * h.row_stride


cdef inline Py_ssize_t n_visible(Problem* P, Py_ssize_t i, Py_ssize_t j0,
                                 Py_ssize_t nk) noexcept nogil:
    """How many of the nk keys j0, j0 + 1, ... query i sees (<= 0: none)."""
    if P.causal and i - j0 + 1 < nk:
        return i - j0 + 1
    return nk


cdef inline Py_ssize_t key_blocks_seen(Problem* P, Py_ssize_t i_last) noexcept nogil:
    """The key blocks a block of queries ending at query i_last visits."""
    if P.causal:
        return min(P.nkb, i_last // BK + 1)
    return P.nkb


cdef inline void* carve(char* base, Py_ssize_t* used, Py_ssize_t nbytes) noexcept nogil:
    """The next 64-byte aligned piece of a workspace (base NULL: only counts the size)."""
    cdef Py_ssize_t at = used[0]
    used[0] = at + round_up(nbytes, 64)
    return NULL if base == NULL else base + at


# ------------------------------------------------------------------ packing

cdef void pack_rows(floating* dst, Py_ssize_t ld, const floating* src, Py_ssize_t row_stride,
                    Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t rows_pad, floating mul
                    ) noexcept nogil:
    """dst[r, c] = src[r·row_stride + c]·mul for r < rows, c < cols; zeros elsewhere in the
    rows_pad x ld block (the padding the micro-kernels' full tiles read)."""
    cdef Py_ssize_t r, c
    cdef const floating* s
    for r in range(rows):
        s = src + r * row_stride
        for c in range(cols):
            dst[r * ld + c] = s[c] * mul
        for c in range(cols, ld):
            dst[r * ld + c] = 0
    if rows_pad > rows:
        memset(dst + rows * ld, 0, (rows_pad - rows) * ld * sizeof(floating))


cdef void pack_transposed(floating* dst, Py_ssize_t ld, Heads* h, Py_ssize_t n,
                          Py_ssize_t first, Py_ssize_t rows, Py_ssize_t cols,
                          floating mul) noexcept nogil:
    """dst[c, r] = (row first + r of head n)[c]·mul for r < rows; zeros for rows <= r < ld.
    TRANSPOSE_ROWS rows at a time, so that each store of a column fills a cache line."""
    cdef const floating* src[TRANSPOSE_ROWS]
    cdef Py_ssize_t r0 = 0, r, c, nr
    cdef floating dummy = 0
    while r0 < rows:
        nr = min(<Py_ssize_t>TRANSPOSE_ROWS, rows - r0)
        for r in range(nr):
            src[r] = row_of(h, n, first + r0 + r, dummy)
        for c in range(cols):
            for r in range(nr):
                dst[c * ld + r0 + r] = src[r][c] * mul
        r0 += nr
    for c in range(cols):
        for r in range(rows, ld):
            dst[c * ld + r] = 0


# ------------------------------------------------------------------ forward

cdef struct ForwardWork:
    Py_ssize_t* head  # the head whose K and V are packed (−1: none yet)
    void* kp        # K of the current head       Tk_pad x d
    void* vp        # V of the current head       Tk_pad x dv_pad
    void* qt        # (query block · scale)ᵀ      d x BQ
    void* st        # scores, then probabilities, transposed: key x query   BK x BQ
    void* acc       # Σ P·V                       BQ x dv_pad
    void* m         # running maxima              BQ (and alpha, block max, block sum: BQ each)
    void* alpha
    void* block_max
    void* block_sum
    double* l       # running sums                BQ


cdef ForwardWork forward_layout(Problem* P, char* base, Py_ssize_t item,
                               Py_ssize_t* size) noexcept nogil:
    """Thread workspace at base (item: the element size); its size in bytes into size."""
    cdef ForwardWork w
    size[0] = 0
    w.head = <Py_ssize_t*>carve(base, size, sizeof(Py_ssize_t))
    w.kp = carve(base, size, P.Tk_pad * P.d * item)
    w.vp = carve(base, size, P.Tk_pad * P.dv_pad * item)
    w.qt = carve(base, size, P.d * BQ * item)
    w.st = carve(base, size, BK * BQ * item)
    w.acc = carve(base, size, BQ * P.dv_pad * item)
    w.m = carve(base, size, BQ * item)
    w.alpha = carve(base, size, BQ * item)
    w.block_max = carve(base, size, BQ * item)
    w.block_sum = carve(base, size, BQ * item)
    w.l = <double*>carve(base, size, BQ * sizeof(double))
    return w


cdef void forward_block(Problem* P, ForwardWork* w, Py_ssize_t n, Py_ssize_t qb,
                        floating dummy) noexcept nogil:
    """Rows i0 .. i0 + nq of head n's output and lse, from the packed K and V of head n.
    The scores are computed transposed, Sᵀ = K·Qᵀ (keys x queries), so that the online
    softmax works on vectors of queries (see mlk_attn_softmax_block)."""
    cdef floating* kp = <floating*>w.kp
    cdef floating* vp = <floating*>w.vp
    cdef floating* st = <floating*>w.st
    cdef floating* acc = <floating*>w.acc
    cdef floating* m = <floating*>w.m
    cdef floating* alpha = <floating*>w.alpha
    cdef floating* out
    cdef floating* lse = <floating*>P.res_lse
    cdef Py_ssize_t i0 = qb * BQ, nq = min(<Py_ssize_t>BQ, P.Tq - i0)
    cdef Py_ssize_t Mq = round_up(nq, MR), Nq = round_up(nq, nr_of(dummy)), kb, j0, nk, r
    cdef bint diagonal
    pack_transposed(<floating*>w.qt, BQ, &P.q, n, i0, nq, P.d, <floating>(P.scale * LOG2E))
    for r in range(BQ):
        m[r] = -INFINITY
        w.l[r] = 0
    memset(acc, 0, Mq * P.dv_pad * sizeof(floating))
    for kb in range(key_blocks_seen(P, i0 + nq - 1)):
        j0 = kb * BK
        nk = min(<Py_ssize_t>BK, P.Tk - j0)
        gemm(round_up(nk, MR), Nq, P.d, kp + j0 * P.d, P.d, 1, <floating*>w.qt, BQ, st, BQ,
             0, ALL, 0)                                                          # Sᵀ = K·Qᵀ
        softmax_block(st, BQ, nk, Nq, P.causal, i0 - j0, m, w.l, alpha,
                      <floating*>w.block_max, <floating*>w.block_sum)
        rescale_rows(acc, P.dv_pad, nq, P.dv_pad, alpha)
        diagonal = P.causal and j0 + nk - 1 > i0
        gemm(Mq, P.dv_pad, nk, st, 1, BQ, vp + j0 * P.dv_pad, P.dv_pad, acc, P.dv_pad, 1,
             ROW_QUERY if diagonal else ALL, i0 - j0)                            # O += P·V
    out = <floating*>P.res_out + (n * P.Tq + i0) * P.dv
    for r in range(nq):
        finish_row(acc + r * P.dv_pad, out + r * P.dv, P.dv, w.l[r])
        lse[n * P.Tq + i0 + r] = <floating>(m[r] * LN2 + log(w.l[r]))     # m is in base 2


cdef void forward_item(Problem* P, char* base, Py_ssize_t item, floating dummy) noexcept nogil:
    """Work item head · nqb + query block, in a thread's workspace at base (which keeps the
    last head's packed K and V: a thread's items come in increasing order, so it packs each
    head once)."""
    cdef Py_ssize_t size, n = item // P.nqb
    cdef ForwardWork w = forward_layout(P, base, sizeof(floating), &size)
    if w.head[0] != n:
        pack_rows(<floating*>w.kp, P.d, row_of(&P.k, n, 0, dummy), P.k.row_stride, P.Tk, P.d,
                  P.Tk_pad, 1)
        pack_rows(<floating*>w.vp, P.dv_pad, row_of(&P.v, n, 0, dummy), P.v.row_stride, P.Tk,
                  P.dv, P.Tk_pad, 1)
        w.head[0] = n
    forward_block(P, &w, n, item - n * P.nqb, dummy)


# ------------------------------------------------------------------ backward

cdef struct BackwardWork:
    Py_ssize_t* head  # the head whose operands are packed (−1: none yet)
    void* qs        # Q · scale                   Tq_pad x d_pad
    void* dop       # dO                          Tq_pad x dv_pad
    void* kt        # Kᵀ                          d x ld_t
    void* ks        # K · scale                   Tk_pad x d_pad
    void* vt        # Vᵀ                          dv x ld_t
    void* lse       # lse, 0 on padding rows      Tq_pad
    void* D         # rowsum(dO ∘ out)            Tq_pad
    void* dq_acc    # Σ dS·K·scale                Tq_pad x d_pad
    void* p         # P of a block pair           BQ x BK
    void* ds        # dP, then dS                 BQ x BK
    void* dk_acc    # dk of a key block           BK x d_pad
    void* dv_acc    # dv of a key block           BK x dv_pad


cdef BackwardWork backward_layout(Problem* P, char* base, Py_ssize_t item,
                                 Py_ssize_t* size) noexcept nogil:
    """Thread workspace at base (item: the element size); its size in bytes into size."""
    cdef BackwardWork w
    size[0] = 0
    w.head = <Py_ssize_t*>carve(base, size, sizeof(Py_ssize_t))
    w.qs = carve(base, size, P.Tq_pad * P.d_pad * item)
    w.dop = carve(base, size, P.Tq_pad * P.dv_pad * item)
    w.kt = carve(base, size, P.d * P.ld_t * item)
    w.ks = carve(base, size, P.Tk_pad * P.d_pad * item)
    w.vt = carve(base, size, P.dv * P.ld_t * item)
    w.lse = carve(base, size, P.Tq_pad * item)
    w.D = carve(base, size, P.Tq_pad * item)
    w.dq_acc = carve(base, size, P.Tq_pad * P.d_pad * item)
    w.p = carve(base, size, BQ * BK * item)
    w.ds = carve(base, size, BQ * BK * item)
    w.dk_acc = carve(base, size, BK * P.d_pad * item)
    w.dv_acc = carve(base, size, BK * P.dv_pad * item)
    return w


cdef void backward_pack(Problem* P, BackwardWork* w, Py_ssize_t n, floating dummy) noexcept nogil:
    """Head n's operands, packed, and its D_i = Σ_c dO_ic out_ic (in double)."""
    cdef floating* lse = <floating*>w.lse
    cdef floating* D = <floating*>w.D
    cdef const floating* lse_in = <const floating*>P.lse + n * P.Tq
    cdef Py_ssize_t i
    pack_rows(<floating*>w.qs, P.d_pad, row_of(&P.q, n, 0, dummy), P.q.row_stride, P.Tq, P.d,
              P.Tq_pad, <floating>P.scale)
    pack_rows(<floating*>w.dop, P.dv_pad, row_of(&P.grad_out, n, 0, dummy),
              P.grad_out.row_stride, P.Tq, P.dv, P.Tq_pad, 1)
    pack_transposed(<floating*>w.kt, P.ld_t, &P.k, n, 0, P.Tk, P.d, 1)
    pack_rows(<floating*>w.ks, P.d_pad, row_of(&P.k, n, 0, dummy), P.k.row_stride, P.Tk, P.d,
              P.Tk_pad, <floating>P.scale)
    pack_transposed(<floating*>w.vt, P.ld_t, &P.v, n, 0, P.Tk, P.dv, 1)
    for i in range(P.Tq_pad):
        lse[i] = lse_in[i] if i < P.Tq else 0
        D[i] = <floating>row_dot(row_of(&P.grad_out, n, i, dummy), row_of(&P.out, n, i, dummy),
                                 P.dv) if i < P.Tq else 0


cdef void backward_pair(Problem* P, BackwardWork* w, Py_ssize_t qb, Py_ssize_t kb, bint do_kv,
                        bint do_q, floating dummy) noexcept nogil:
    """One (query block, key block) pair: recompute P and dS, then add Pᵀ·dO into dv_acc and
    dSᵀ·Q·scale into dk_acc (do_kv), dS·K·scale into the block's rows of dq_acc (do_q)."""
    cdef floating* qs = <floating*>w.qs
    cdef floating* dop = <floating*>w.dop
    cdef floating* p = <floating*>w.p
    cdef floating* ds = <floating*>w.ds
    cdef floating* lse = <floating*>w.lse
    cdef floating* D = <floating*>w.D
    cdef Py_ssize_t i0 = qb * BQ, nq = min(<Py_ssize_t>BQ, P.Tq - i0)
    cdef Py_ssize_t j0 = kb * BK, nk = min(<Py_ssize_t>BK, P.Tk - j0)
    cdef Py_ssize_t Mq = round_up(nq, MR), Mk = round_up(nk, MR), r, vis
    cdef bint diagonal = P.causal and j0 + nk - 1 > i0
    if P.causal and j0 > i0 + nq - 1:
        return                                              # no query here sees these keys
    gemm(Mq, BK, P.d, qs + i0 * P.d_pad, P.d_pad, 1, <floating*>w.kt + j0, P.ld_t, p, BK,
         0, ALL, 0)                                                             # S = Q·Kᵀ
    gemm(Mq, BK, P.dv, dop + i0 * P.dv_pad, P.dv_pad, 1, <floating*>w.vt + j0, P.ld_t, ds,
         BK, 0, ALL, 0)                                                         # dP = dO·Vᵀ
    for r in range(nq):
        vis = n_visible(P, i0 + r, j0, nk)
        probs_row(p + r * BK, BK, vis, lse[i0 + r])                             # P = e^(S − lse)
        dscores_row(p + r * BK, ds + r * BK, BK, vis, D[i0 + r])                # dS = P(dP − D)
    if do_kv:
        gemm(Mk, P.dv_pad, nq, p, 1, BK, dop + i0 * P.dv_pad, P.dv_pad, <floating*>w.dv_acc,
             P.dv_pad, 1, ROW_KEY if diagonal else ALL, i0 - j0)               # dV += Pᵀ·dO
        gemm(Mk, P.d_pad, nq, ds, 1, BK, qs + i0 * P.d_pad, P.d_pad, <floating*>w.dk_acc,
             P.d_pad, 1, ROW_KEY if diagonal else ALL, i0 - j0)                # dK += dSᵀ·Q
    if do_q:
        gemm(Mq, P.d_pad, nk, ds, BK, 1, <floating*>w.ks + j0 * P.d_pad, P.d_pad,
             <floating*>w.dq_acc + i0 * P.d_pad, P.d_pad, 1, ROW_QUERY if diagonal else ALL,
             i0 - j0)                                                           # dQ += dS·K


cdef void backward_key_block(Problem* P, BackwardWork* w, Py_ssize_t n, Py_ssize_t kb,
                             bint do_q, floating dummy) noexcept nogil:
    """dk and dv of key block kb of head n (every query block that sees it, in order); with
    do_q, the pairs' dS·K are added into dq_acc as well."""
    cdef Py_ssize_t j0 = kb * BK, nk = min(<Py_ssize_t>BK, P.Tk - j0), qb, r, c
    cdef floating* dk_acc = <floating*>w.dk_acc
    cdef floating* dv_acc = <floating*>w.dv_acc
    cdef floating* dk = <floating*>P.res_dk + (n * P.Tk + j0) * P.d
    cdef floating* dv = <floating*>P.res_dv + (n * P.Tk + j0) * P.dv
    memset(dk_acc, 0, BK * P.d_pad * sizeof(floating))
    memset(dv_acc, 0, BK * P.dv_pad * sizeof(floating))
    for qb in range(j0 // BQ if P.causal else 0, P.nqb):
        backward_pair(P, w, qb, kb, True, do_q, dummy)
    for r in range(nk):
        for c in range(P.d):
            dk[r * P.d + c] = dk_acc[r * P.d_pad + c]
        for c in range(P.dv):
            dv[r * P.dv + c] = dv_acc[r * P.dv_pad + c]


cdef void write_dq(Problem* P, BackwardWork* w, Py_ssize_t n, Py_ssize_t i0,
                   Py_ssize_t rows, floating dummy) noexcept nogil:
    cdef floating* dq_acc = <floating*>w.dq_acc
    cdef floating* dq = <floating*>P.res_dq + (n * P.Tq + i0) * P.d
    cdef Py_ssize_t r, c
    for r in range(rows):
        for c in range(P.d):
            dq[r * P.d + c] = dq_acc[(i0 + r) * P.d_pad + c]


cdef void backward_query_block(Problem* P, BackwardWork* w, Py_ssize_t n, Py_ssize_t qb,
                               floating dummy) noexcept nogil:
    """dq of query block qb of head n: the pairs backward_heads computes for it, added in the
    same order (key blocks ascending), so with the same bits."""
    cdef Py_ssize_t i0 = qb * BQ, nq = min(<Py_ssize_t>BQ, P.Tq - i0), kb
    memset(<floating*>w.dq_acc + i0 * P.d_pad, 0, BQ * P.d_pad * sizeof(floating))
    for kb in range(key_blocks_seen(P, i0 + nq - 1)):
        backward_pair(P, w, qb, kb, False, True, dummy)
    write_dq(P, w, n, i0, nq, dummy)


cdef void backward_item(Problem* P, char* base, Py_ssize_t item, Kind kind,
                        floating dummy) noexcept nogil:
    """Work item ``item`` of the backward, in a thread's workspace at base (which keeps the
    last head's packed operands):
      BACKWARD_HEADS    item = head: one pass, each key block's dk, dv and dq on the way;
      BACKWARD_KEYS     item = head · nkb + key block: its dk, dv (pass 1 of the split);
      BACKWARD_QUERIES  item = head · nqb + query block: its dq (pass 2)."""
    cdef Py_ssize_t size, kb
    cdef BackwardWork w = backward_layout(P, base, sizeof(floating), &size)
    cdef Py_ssize_t per_head = (1 if kind == BACKWARD_HEADS else
                                P.nkb if kind == BACKWARD_KEYS else P.nqb)
    cdef Py_ssize_t n = item // per_head
    if w.head[0] != n:
        backward_pack(P, &w, n, dummy)
        w.head[0] = n
    if kind == BACKWARD_HEADS:
        memset(w.dq_acc, 0, P.Tq_pad * P.d_pad * sizeof(floating))
        for kb in range(P.nkb):
            backward_key_block(P, &w, n, kb, True, dummy)
        write_dq(P, &w, n, 0, P.Tq, dummy)
    elif kind == BACKWARD_KEYS:
        backward_key_block(P, &w, n, item - n * per_head, False, dummy)
    else:
        backward_query_block(P, &w, n, item - n * per_head, dummy)


# ------------------------------------------------------------------ threads

cdef void run_item(Kind kind, Problem* P, char* base, Py_ssize_t item,
                   floating dummy) noexcept nogil:
    if kind == FORWARD:
        forward_item(P, base, item, dummy)
    else:
        backward_item(P, base, item, kind, dummy)


cdef class Workspace:
    """One 64-byte aligned workspace per thread, in a NumPy array (so that tracemalloc counts
    it with the outputs)."""
    cdef object buffer
    cdef char* base
    cdef Py_ssize_t stride
    cdef int nt

    def __cinit__(self, int nt, Py_ssize_t nbytes):
        self.nt = nt
        self.stride = round_up(max(nbytes, 64), 64)
        self.buffer = np.empty(self.stride * nt + 64, np.uint8)
        cdef char* p = <char*>cnp.PyArray_DATA(self.buffer)
        self.base = p + (-<size_t>p) % 64


#: a workspace up to this size is kept for the calling Python thread's next call
KEEP_WORKSPACE_BYTES = 32 * 2**20
_kept = threading.local()


cdef Workspace workspace(int nt, Py_ssize_t nbytes):
    """A workspace for nt threads of nbytes each: the one the calling Python thread kept from
    its last call when it is large enough (so that a training loop's steady state allocates
    nothing), else a new one, kept in turn when not too large. One per Python thread: two
    threads calling attention at once never share one."""
    cdef Workspace ws = getattr(_kept, "ws", None)
    if ws is not None and ws.nt >= nt and ws.stride >= nbytes:
        return ws
    if ws is not None:
        nt, nbytes = max(nt, ws.nt), max(nbytes, ws.stride)
    ws = Workspace(nt, nbytes)
    if ws.stride * ws.nt <= KEEP_WORKSPACE_BYTES:
        _kept.ws = ws
    return ws


cdef void run(Kind kind, Problem* P, Workspace ws, int n_threads, Py_ssize_t n_items,
              floating dummy) noexcept nogil:
    """Every work item, handed out one at a time in increasing order to whichever thread is
    free (so that a thread slowed by another process on its core does less of the work).
    Which thread computes an item never changes how it is computed: same bits for any thread
    count."""
    cdef Py_ssize_t item
    cdef int t, nt = <int>min(<Py_ssize_t>min(n_threads, ws.nt), n_items)
    for t in range(nt):
        (<Py_ssize_t*>(ws.base + t * ws.stride))[0] = -1        # no head packed yet
    if nt == 1:
        for item in range(n_items):
            run_item(kind, P, ws.base, item, dummy)
        return
    for item in prange(n_items, num_threads=nt, schedule="dynamic", chunksize=1):
        run_item(kind, P, ws.base + threadid() * ws.stride, item, dummy)


cdef Heads heads_of(cnp.ndarray a, cnp.ndarray offsets, Py_ssize_t row_stride):
    """Head n of a starts offsets[n] elements into a's data (offsets: C-contiguous int64, one
    per head, checked by mlkernels/attention.py), its rows row_stride elements apart."""
    cdef Heads h
    h.data = cnp.PyArray_DATA(a)
    h.offsets = <const long long*>cnp.PyArray_DATA(offsets)
    h.row_stride = row_stride
    return h


cdef void setup(Problem* P, Py_ssize_t N, Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t d,
                Py_ssize_t dv, double scale, bint causal, Py_ssize_t nr, Py_ssize_t item):
    P.N = N
    P.Tq = Tq
    P.Tk = Tk
    P.d = d
    P.dv = dv
    P.nqb = (Tq + BQ - 1) // BQ
    P.nkb = (Tk + BK - 1) // BK
    P.Tq_pad = P.nqb * BQ
    P.Tk_pad = P.nkb * BK
    # One cache line more than Tk_pad: with rows a multiple of 4 KiB apart (Tk = 1024
    # float32), a column block of Kᵀ falls into the same few sets of L1 and evicts itself.
    P.ld_t = P.Tk_pad + 64 // item
    P.d_pad = round_up(d, nr)
    P.dv_pad = round_up(dv, nr)
    P.scale = scale
    P.causal = causal


cdef int threads_for(Problem* P, int directions, int n_threads):
    cdef double pairs = <double>P.Tq * P.Tk * (0.5 if P.causal else 1.0)
    return 1 if P.N * pairs * (P.d + P.dv) * directions < SERIAL_BELOW else n_threads


# The entries take ndarrays, not typed memoryviews (no memoryview code in the module, no
# views to acquire per call); the float type is read off the output and chosen once.

def forward(cnp.ndarray q, cnp.ndarray q_off, Py_ssize_t q_rs,
            cnp.ndarray k, cnp.ndarray k_off, Py_ssize_t k_rs,
            cnp.ndarray v, cnp.ndarray v_off, Py_ssize_t v_rs,
            cnp.ndarray out, cnp.ndarray lse, Py_ssize_t Tk, Py_ssize_t d,
            double scale, bint causal, int n_threads):
    """out (N, Tq, dv) and lse (N, Tq) of N heads, C-contiguous, of q's float type. The arrays,
    their head offsets (int64) and row strides are checked by mlkernels/attention.py; N, Tq,
    Tk >= 1 (it handles the rest)."""
    cdef Problem P
    cdef Py_ssize_t nbytes
    cdef bint f64 = cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT64
    cdef int item = 8 if f64 else 4
    setup(&P, cnp.PyArray_DIM(out, 0), cnp.PyArray_DIM(out, 1), Tk, d, cnp.PyArray_DIM(out, 2),
          scale, causal, nr_of(<double>0) if f64 else nr_of(<float>0), item)
    P.q = heads_of(q, q_off, q_rs)
    P.k = heads_of(k, k_off, k_rs)
    P.v = heads_of(v, v_off, v_rs)
    P.res_out = cnp.PyArray_DATA(out)
    P.res_lse = cnp.PyArray_DATA(lse)
    forward_layout(&P, NULL, item, &nbytes)
    cdef Py_ssize_t n_items = P.N * P.nqb
    cdef int nt = <int>min(<Py_ssize_t>threads_for(&P, 1, n_threads), n_items)
    cdef Workspace ws = workspace(nt, nbytes)
    with nogil:
        if f64:
            run(FORWARD, &P, ws, nt, n_items, <double>0)
        else:
            run(FORWARD, &P, ws, nt, n_items, <float>0)


def backward(cnp.ndarray grad_out, cnp.ndarray g_off, Py_ssize_t g_rs,
             cnp.ndarray q, cnp.ndarray q_off, Py_ssize_t q_rs,
             cnp.ndarray k, cnp.ndarray k_off, Py_ssize_t k_rs,
             cnp.ndarray v, cnp.ndarray v_off, Py_ssize_t v_rs,
             cnp.ndarray out, cnp.ndarray o_off, Py_ssize_t o_rs,
             cnp.ndarray lse, cnp.ndarray dq, cnp.ndarray dk, cnp.ndarray dv,
             double scale, bint causal, int n_threads, bint force_split=False):
    """dq (N, Tq, d), dk (N, Tk, d), dv (N, Tk, dv) of N heads, C-contiguous, of q's float type
    (N, Tq, Tk >= 1; checked by mlkernels/attention.py). ``force_split`` takes the two-pass
    schedule whatever the thread count (for the tests: both schedules must give the same bits)."""
    cdef Problem P
    cdef Py_ssize_t nbytes
    cdef bint f64 = cnp.PyArray_TYPE(dq) == cnp.NPY_FLOAT64
    cdef int item = 8 if f64 else 4
    setup(&P, cnp.PyArray_DIM(dq, 0), cnp.PyArray_DIM(dq, 1), cnp.PyArray_DIM(dk, 1),
          cnp.PyArray_DIM(dq, 2), cnp.PyArray_DIM(dv, 2), scale, causal,
          nr_of(<double>0) if f64 else nr_of(<float>0), item)
    P.grad_out = heads_of(grad_out, g_off, g_rs)
    P.q = heads_of(q, q_off, q_rs)
    P.k = heads_of(k, k_off, k_rs)
    P.v = heads_of(v, v_off, v_rs)
    P.out = heads_of(out, o_off, o_rs)
    P.lse = cnp.PyArray_DATA(lse)
    P.res_dq = cnp.PyArray_DATA(dq)
    P.res_dk = cnp.PyArray_DATA(dk)
    P.res_dv = cnp.PyArray_DATA(dv)
    backward_layout(&P, NULL, item, &nbytes)
    cdef int nt = threads_for(&P, 2, n_threads)
    cdef Workspace ws = workspace(nt, nbytes)
    cdef bint by_heads = P.N >= nt and not force_split
    with nogil:
        if f64:
            backward_runs(&P, ws, nt, by_heads, <double>0)
        else:
            backward_runs(&P, ws, nt, by_heads, <float>0)


cdef void backward_runs(Problem* P, Workspace ws, int nt, bint by_heads,
                        floating dummy) noexcept nogil:
    """One item per head; or, with fewer heads than threads, key blocks in parallel (dk, dv),
    then query blocks (dq). (dummy: the float type.)"""
    if by_heads:
        run(BACKWARD_HEADS, P, ws, nt, P.N, dummy)
    else:
        run(BACKWARD_KEYS, P, ws, nt, P.N * P.nkb, dummy)
        run(BACKWARD_QUERIES, P, ws, nt, P.N * P.nqb, dummy)
