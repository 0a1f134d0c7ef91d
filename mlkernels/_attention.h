/* _attention.h -- the tile arithmetic of FlashAttention-style attention (_attention.pyx).
 *
 * Two kinds of loops, both written so that GCC vectorizes them without -ffast-math:
 *
 * 1. Small matrix products on tiles, C (+)= A·B, by a register-blocked micro-kernel: an
 *    MR x NR block of C stays in 2·MR vector registers for the whole inner loop; each inner
 *    step loads a row of B (NR wide: two vectors), broadcasts MR values of A and does 2·MR
 *    fused multiply-adds. Plain loops over a fixed-size local array: GCC unrolls r and j and
 *    keeps the array in registers (checked in the assembly: vfmadd231ps on 16 zmm
 *    accumulators with AVX-512). Each product of attention takes this shape once
 *    _attention.pyx has laid out its operands -- B row-major and padded to a multiple of NR,
 *    A read through two strides (so that a tile and its transpose are the same buffer):
 *        Sᵀ  = K·Qᵀ      A = K rows,          B = Qᵀ (packed)    inner: d      (forward)
 *        O  += P·V       A = Sᵀ by columns,   B = V              inner: keys
 *        S   = Q·Kᵀ      A = Q rows,          B = Kᵀ (packed)    inner: d      (backward)
 *        dP  = dO·Vᵀ     A = dO rows,         B = Vᵀ (packed)    inner: dv
 *        dV += Pᵀ·dO     A = P by columns,    B = dO             inner: queries
 *        dK += dSᵀ·Q     A = dS by columns,   B = Q              inner: queries
 *        dQ += dS·K      A = dS rows,         B = K              inner: keys
 *    Never BLAS: these run inside OpenMP regions (docs/threads.md: BLAS is never called from inside a parallel region).
 *
 * 2. Passes over the rows of a score tile (mask, max, exp, sums): `omp simd` loops, with the
 *    exponentials of _vecmath.h (float32 and float64 alike: no libm call in a loop).
 *
 * Causal masking inside the products. Where a tile straddles the diagonal, the masked scores
 * give P = 0 and dS = 0 exactly, but 0·NaN is NaN: a NaN or inf in a key or value a query
 * does not see would still reach its output. So the micro-kernel takes, per row r of A, the
 * range of inner indices p that row uses, [lo0 + r·dlo, hi0 + r·dhi), and adds only those
 * terms: an output depends on exactly the keys and queries it attends to, as in the
 * reference. The ranges also skip the unseen half of a diagonal tile.
 *
 * Everything is defined for float (suffix _f32) and double (_f64) by MLK_ATTN_TILES.
 */
#ifndef MLK_ATTENTION_H
#define MLK_ATTENTION_H

#include <math.h>
#include <stddef.h>
#include "_vecmath.h"

/* Register tile of the micro-kernel: NR = two vectors of the widest registers the build
 * targets, MR rows, so 2·MR accumulators -- 16 of the 32 zmm with AVX-512, 8 of the 16 ymm
 * (or xmm) otherwise, leaving room for the row of B and the broadcast value (with 16 ymm
 * accumulators AVX2 spills to the stack; docs/kernels/attention.md has the shapes tried).
 * MR and NR divide the block sizes of _attention.pyx. */
#if defined(__AVX512F__)
#define MLK_ATTN_VEC_BYTES 64
#define MLK_ATTN_MR 8
#elif defined(__AVX__)
#define MLK_ATTN_VEC_BYTES 32
#define MLK_ATTN_MR 4
#else
#define MLK_ATTN_VEC_BYTES 16
#define MLK_ATTN_MR 4
#endif
#define MLK_ATTN_NR_F32 (2 * MLK_ATTN_VEC_BYTES / 4)
#define MLK_ATTN_NR_F64 (2 * MLK_ATTN_VEC_BYTES / 8)

/* Which inner indices p row r of a product may use (the causal mask in a diagonal tile):
 *   MLK_ATTN_ALL        every p
 *   MLK_ATTN_ROW_QUERY  row r is query i0 + r, p is key j0 + p: p <= off + r   (off = i0 − j0)
 *   MLK_ATTN_ROW_KEY    row r is key j0 + r, p is query i0 + p:  p >= r − off   */
enum { MLK_ATTN_ALL = 0, MLK_ATTN_ROW_QUERY = 1, MLK_ATTN_ROW_KEY = 2 };

static inline ptrdiff_t mlk_attn_clamp(ptrdiff_t x, ptrdiff_t lo, ptrdiff_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* 2^x for the forward's probabilities, x = s − m <= 0, −inf (masked) or NaN. The forward's
 * scores carry the factor log2(e) (folded into q's scale), so the reduction is x = k + r with
 * k = round(x) and r = x − k exact -- no ln 2 constants -- and 2^r is its Taylor polynomial
 * in r to degree 7 (|r| <= 1/2: remainder < 6e-9 relative); 2^k goes straight into the
 * exponent bits, as x >= −126 keeps the result normal. Below that it would be subnormal and
 * is flushed to 0 (less than 1.2e-38 of the row's largest term, which is 1). −inf gives 0,
 * NaN passes through. About 15 operations where mlk_expf takes 25: the forward's
 * exponentials cost a fifth as much as its products. */
MLK_INLINE float mlk_attn_exp2_nonpos_f32(float x) {
    float xc = x < -126.0f ? -126.0f : x;
    float k = mlk_round_shift(xc);
    float r = xc - k;
    float p = 1.525273380e-05f;
    p = p * r + 1.540353039e-04f;
    p = p * r + 1.333355815e-03f;
    p = p * r + 9.618129108e-03f;
    p = p * r + 5.550410866e-02f;
    p = p * r + 2.402265070e-01f;
    p = p * r + 6.931471806e-01f;
    float y = 1.0f + r * p;
    uint32_t bits = (uint32_t)mlk_float_to_bits(y) + ((uint32_t)(int32_t)k << 23);
    return x < -126.0f ? 0.0f : mlk_bits_to_float((int32_t)bits);
}
MLK_INLINE double mlk_attn_exp2_nonpos_f64(double x) { return mlk_exp(x * 0.69314718055994530942); }
/* e^x for any x (the backward's e^(s − lse): with a caller's lse the exponent may be > 0). */
MLK_INLINE float mlk_attn_exp_f32(float x) { return mlk_expf(x); }
MLK_INLINE double mlk_attn_exp_f64(double x) { return mlk_exp(x); }

#define MLK_ATTN_TILES(T, SUFFIX, NR)                                                              \
/* One MR x NR block of C: C[r, :] (+)= Σ_p A[r, p]·B[p, :] over the p that row r uses,            \
 * p in [lo0 + r·dlo, hi0 + r·dhi) ∩ [0, K) (dlo, dhi are 0 or 1); A[r, p] is                      \
 * A[r·a_row + p·a_inner], the rows of B are ldb apart, those of C ldc apart.                      \
 * Scalar math:                                                                                    \
 *     for r < MR:  for p in rows_range(r):  for j < NR:  C[r][j] += A[r][p] * B[p][j]             \
 * The p loop is cut in three: the p that every row uses (no test), and before and after           \
 * them the triangles where rows start or stop (a test per row, outside the vector loop).          \
 * The accumulators stay in registers throughout. */                                               \
MLK_INLINE void mlk_attn_micro_##SUFFIX(ptrdiff_t K, const T* restrict A, ptrdiff_t a_row,         \
                                        ptrdiff_t a_inner, const T* restrict B, ptrdiff_t ldb,     \
                                        T* restrict C, ptrdiff_t ldc, int accumulate,              \
                                        ptrdiff_t lo0, ptrdiff_t dlo, ptrdiff_t hi0,               \
                                        ptrdiff_t dhi) {                                           \
    T acc[MLK_ATTN_MR][NR];                                                                        \
    for (int r = 0; r < MLK_ATTN_MR; r++)                                                          \
        for (int j = 0; j < NR; j++) acc[r][j] = accumulate ? C[r * ldc + j] : (T)0;               \
    ptrdiff_t first = mlk_attn_clamp(lo0, 0, K);                                                   \
    ptrdiff_t last = mlk_attn_clamp(hi0 + (MLK_ATTN_MR - 1) * dhi, first, K);                      \
    ptrdiff_t dense_lo = mlk_attn_clamp(lo0 + (MLK_ATTN_MR - 1) * dlo, first, last);               \
    ptrdiff_t dense_hi = mlk_attn_clamp(hi0, dense_lo, last);                                      \
    for (ptrdiff_t p = dense_lo; p < dense_hi; p++) {          /* every row uses p */              \
        const T* b = B + p * ldb;                                                                  \
        for (int r = 0; r < MLK_ATTN_MR; r++) {                                                    \
            T a = A[r * a_row + p * a_inner];                                                      \
            _Pragma("omp simd")                                                                    \
            for (int j = 0; j < NR; j++) acc[r][j] += a * b[j];           /* simd */               \
        }                                                                                          \
    }                                                                                              \
    for (int side = 0; side < 2; side++) {             /* where rows start, then stop */           \
        ptrdiff_t p_end = side == 0 ? dense_lo : last;                                             \
        for (ptrdiff_t p = side == 0 ? first : dense_hi; p < p_end; p++) {                         \
            const T* b = B + p * ldb;                                                              \
            for (int r = 0; r < MLK_ATTN_MR; r++) {                                                \
                if (p < lo0 + r * dlo || p >= hi0 + r * dhi) continue;                             \
                T a = A[r * a_row + p * a_inner];                                                  \
                _Pragma("omp simd")                                                                \
                for (int j = 0; j < NR; j++) acc[r][j] += a * b[j];       /* simd */               \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    for (int r = 0; r < MLK_ATTN_MR; r++)                                                          \
        for (int j = 0; j < NR; j++) C[r * ldc + j] = acc[r][j];                                   \
}                                                                                                  \
                                                                                                   \
/* C (M x N) (+)= A (M x K)·B (K x N), M a multiple of MR and N of NR (the callers pad), with      \
 * the causal restriction `mask` (MLK_ATTN_ALL, _ROW_QUERY or _ROW_KEY, diagonal offset            \
 * `off`); accumulate = 0 overwrites C. A column block of B (K x NR) serves every row block        \
 * from L1. */                                                                                     \
static void mlk_attn_gemm_##SUFFIX(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T* A,              \
                                   ptrdiff_t a_row, ptrdiff_t a_inner, const T* B,                 \
                                   ptrdiff_t ldb, T* C, ptrdiff_t ldc, int accumulate,             \
                                   int mask, ptrdiff_t off) {                                      \
    for (ptrdiff_t n0 = 0; n0 < N; n0 += NR) {                                                     \
        for (ptrdiff_t m0 = 0; m0 < M; m0 += MLK_ATTN_MR) {                                        \
            ptrdiff_t lo0 = 0, dlo = 0, hi0 = K, dhi = 0;                                          \
            if (mask == MLK_ATTN_ROW_QUERY) {          /* key p <= query: p <= off + m0 + r */     \
                hi0 = off + m0 + 1;                                                                \
                dhi = 1;                                                                           \
            } else if (mask == MLK_ATTN_ROW_KEY) {     /* query p >= key: p >= m0 + r - off */     \
                lo0 = m0 - off;                                                                    \
                dlo = 1;                                                                           \
            }                                                                                      \
            mlk_attn_micro_##SUFFIX(K, A + m0 * a_row, a_row, a_inner, B + n0, ldb,                \
                                    C + m0 * ldc + n0, ldc, accumulate, lo0, dlo, hi0, dhi);       \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* The forward's online-softmax step for a block of queries (columns i < nq) and a block of        \
 * keys (rows j < nk) of the transposed scores st[j·ld + i], in base 2 (the scores carry the       \
 * factor log2 e), where query i sees key j if j <= i + off (off = i0 − j0) when causal,           \
 * every key of the block otherwise. Per query i:                                                  \
 *     m' = max(m, max_j s_ji);   alpha_i = 2^(m − m');   m <- m'                                  \
 *     s_ji <- 2^(s_ji − m')   (in place: the unnormalized probabilities; 0 where masked)          \
 *     l <- alpha_i·l + Σ_j s_ji                                                                   \
 * and alpha[i] = alpha_i, by which the caller rescales query i's partial Σ P·V.                   \
 * Transposed, every step is a vertical operation on vectors of queries: no horizontal max         \
 * or sum per query and block, and the 2^(m − m') are vectorized too. A real query sees a          \
 * key of its first block, so m' is finite there and alpha = 2^(−inf) = 0 clears the empty         \
 * start; a query with NaN (or only −inf) scores gets NaN. */                                      \
static void mlk_attn_softmax_block_##SUFFIX(T* restrict st, ptrdiff_t ld, ptrdiff_t nk,            \
                                            ptrdiff_t nq, int causal, ptrdiff_t off,               \
                                            T* restrict m, double* restrict l,                     \
                                            T* restrict alpha, T* restrict block_max,              \
                                            T* restrict block_sum) {                               \
    for (ptrdiff_t i = 0; i < nq; i++) {                                                           \
        block_max[i] = -INFINITY;                                                                  \
        block_sum[i] = 0;                                                                          \
    }                                                                                              \
    for (ptrdiff_t j = 0; j < nk; j++) {                                                           \
        T* restrict row = st + j * ld;                                                             \
        if (causal && j > off) {                   /* queries i < j − off do not see key j */      \
            _Pragma("omp simd")                                                 /* simd */         \
            for (ptrdiff_t i = 0; i < nq; i++) row[i] = i + off >= j ? row[i] : (T)-INFINITY;      \
        }                                                                                          \
        _Pragma("omp simd")                                                     /* simd */         \
        for (ptrdiff_t i = 0; i < nq; i++) block_max[i] = row[i] > block_max[i] ? row[i]           \
                                                                                 : block_max[i];   \
    }                                                                                              \
    _Pragma("omp simd")                                                 /* simd */         \
    for (ptrdiff_t i = 0; i < nq; i++) {                                                           \
        T m_new = m[i] > block_max[i] ? m[i] : block_max[i];                                       \
        alpha[i] = mlk_attn_exp2_nonpos_##SUFFIX(m[i] - m_new);                                    \
        m[i] = m_new;                                                                              \
    }                                                                                              \
    for (ptrdiff_t j = 0; j < nk; j++) {                                                           \
        T* restrict row = st + j * ld;                                                             \
        _Pragma("omp simd")                                             /* simd */         \
        for (ptrdiff_t i = 0; i < nq; i++) {                                                       \
            row[i] = mlk_attn_exp2_nonpos_##SUFFIX(row[i] - m[i]);                                 \
            block_sum[i] += row[i];                                                                \
        }                                                                                          \
    }                                                                                              \
    _Pragma("omp simd")                                                         /* simd */         \
    for (ptrdiff_t i = 0; i < nq; i++) l[i] = l[i] * (double)alpha[i] + (double)block_sum[i];      \
}                                                                                                  \
                                                                                                   \
/* acc[r, :] *= alpha[r] for the rows r < rows whose factor is not 1 (n values each). */           \
static inline void mlk_attn_rescale_rows_##SUFFIX(T* restrict acc, ptrdiff_t ld,                   \
                                                  ptrdiff_t rows, ptrdiff_t n,                     \
                                                  const T* restrict alpha) {                       \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                         \
        T a = alpha[r];                                                                            \
        if (a == 1) continue;                                                                      \
        T* restrict row = acc + r * ld;                                                            \
        _Pragma("omp simd")                                                     /* simd */         \
        for (ptrdiff_t c = 0; c < n; c++) row[c] *= a;                                             \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* The end of a forward row: out[c] = acc[c] / l. */                                               \
static inline void mlk_attn_finish_row_##SUFFIX(const T* restrict acc, T* restrict out,            \
                                                ptrdiff_t n, double l) {                           \
    T denom = (T)l;                                                                                \
    _Pragma("omp simd")                                                         /* simd */         \
    for (ptrdiff_t c = 0; c < n; c++) out[c] = acc[c] / denom;                                     \
}                                                                                                  \
                                                                                                   \
/* The backward's probabilities for one query row and a block of n keys, of which the first        \
 * `visible` are seen (visible may be <= 0): s[j] <- e^(s[j] − lse) for j < visible, else 0. */    \
static inline void mlk_attn_probs_row_##SUFFIX(T* restrict s, ptrdiff_t n, ptrdiff_t visible,      \
                                               T lse) {                                            \
    _Pragma("omp simd")                                                 /* simd */         \
    for (ptrdiff_t j = 0; j < n; j++) {                                                            \
        T e = mlk_attn_exp_##SUFFIX(s[j] - lse);                                                   \
        s[j] = j < visible ? e : (T)0;                                                             \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* dS = P·(dP − D) for one query row, D = Σ_c dO[c]·out[c]; 0 where masked. dP is                  \
 * overwritten. */                                                                                 \
static inline void mlk_attn_dscores_row_##SUFFIX(const T* restrict p, T* restrict dp,              \
                                                 ptrdiff_t n, ptrdiff_t visible, T D) {            \
    _Pragma("omp simd")                                                         /* simd */         \
    for (ptrdiff_t j = 0; j < n; j++) {                                                            \
        T ds = p[j] * (dp[j] - D);                                                                 \
        dp[j] = j < visible ? ds : (T)0;                                                           \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* Σ_c a[c]·b[c] for one row, in double (the backward's D_i). */                                   \
static inline double mlk_attn_row_dot_##SUFFIX(const T* restrict a, const T* restrict b,           \
                                               ptrdiff_t n) {                                      \
    double total = 0;                                                                              \
    _Pragma("omp simd reduction(+:total)")                                      /* simd */         \
    for (ptrdiff_t c = 0; c < n; c++) total += (double)a[c] * (double)b[c];                        \
    return total;                                                                                  \
}

MLK_ATTN_TILES(float, f32, MLK_ATTN_NR_F32)
MLK_ATTN_TILES(double, f64, MLK_ATTN_NR_F64)

#undef MLK_ATTN_TILES

#endif
