/* _bf16_product.h -- the product of two bfloat16 matrices on AVX-512 BF16 (vdpbf16ps), float32 sums.
 *
 * Math:   C[i, j] = bias[j] + Σ_k A(i, k)·B(j, k)      for i < m, j < n, k < K
 *         A(i, k) = a[i·a_rs + k·a_ks],  B(j, k) = b[j·b_rs + k·b_ks]   (bfloat16 bits)
 * C is written as float32 (c32, row stride ldc) or rounded once to bfloat16 (c16).
 * The three products of a linear layer are this with different strides: y = x·Wᵀ (both rows
 * along k), grad_x = g·W (B read down W's columns), grad_W = gᵀ·x (A down g's columns).
 *
 * Scalar loop (what it computes, up to the order of the float32 additions):
 *     for i, j:  s = bias[j];  for k: s += float(A(i, k)) * float(B(j, k));  C[i, j] = s
 *
 * Why it is fast: vdpbf16ps multiplies 32 pairs of bfloat16 and adds them, two by two, into
 * 16 float32 sums: twice the multiply-adds per instruction of a float32 FMA, and half the bytes
 * per operand. The operands are packed once into the order the instruction reads ("pairs":
 * elements k and k + 1 of a row share one 32-bit word): B into panels of NR = 32 columns, A
 * into blocks of MR = 8 rows. The micro-kernel keeps an 8 x 32 tile of C in 16 registers,
 * each step loading two vectors of B pairs and broadcasting one pair of A per row (the
 * BLIS/GotoBLAS structure). Blocking: KC = 1024 values of k per pass (a B panel's 64 KiB and
 * an MC = 64-row band of A, 128 KiB, stay in L2 while the band's 8-row blocks run over the
 * panels), and a band's partial sums over NC = 1024 columns (256 KiB) stay in L2 until they
 * are final, then go to C once: as float32, or rounded to bfloat16 there (no float32 copy of
 * C in memory). A long KC matters more than an L1-sized B panel: every pass loads and stores
 * each tile's partial sums once, and with KC = 256 (B's panel in L1) the products of a linear
 * layer ran slower (figures: docs/kernels/bf16.md).
 *
 * Numerics (documented in docs/kernels/bf16.md): each product of two bfloat16 values is exact
 * in float32; the sums are float32, added in an order of their own (pairs, then K blocks), so
 * the result differs from an sgemm of the widened operands by float32 rounding, as two BLAS
 * libraries' results do. vdpbf16ps treats subnormal inputs as zero and flushes subnormal
 * results (it ignores MXCSR): values below 2^-126 in magnitude count as 0.
 *
 * Only the avx512 variant has the instruction path; mlk_bf16_product_available() says whether
 * this CPU runs it (AVX-512 BF16, a feature beyond x86-64-v4, checked at run time as
 * _half.h's rounding is). Elsewhere the caller takes the float32 sgemm path.
 * Reference: mlkernels/reference/linear.py (the product in float64).
 */
#ifndef MLK_BF16_PRODUCT_H
#define MLK_BF16_PRODUCT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_half.h"

enum { MLK_BP_MR = 8, MLK_BP_NR = 32, MLK_BP_KC = 1024, MLK_BP_MC = 64, MLK_BP_NC = 1024 };

/* 32-bit words of B's packed panels: ceil(n / NR) panels of ceil(K / 2) pairs of NR words */
static inline ptrdiff_t mlk_bp_packed_b_words(ptrdiff_t n, ptrdiff_t k) {
    return (n + MLK_BP_NR - 1) / MLK_BP_NR * ((k + 1) / 2) * MLK_BP_NR;
}

/* floats of one thread's scratch: a packed band of A (MC rows x KC) and its partial sums */
static inline ptrdiff_t mlk_bp_scratch_floats(void) {
    return (ptrdiff_t)MLK_BP_MC * (MLK_BP_KC / 2) + (ptrdiff_t)MLK_BP_MC * MLK_BP_NC + 16;
}

/* Panels [p0, p1) of B, packed: word (p, q, c) = B(p·NR + c, 2q) | B(p·NR + c, 2q + 1) << 16,
 * zero past B's last column or last k (so that padding adds nothing). The loops run along
 * whichever of B's strides is 1: down each column's k (rows of W), or across the columns of
 * two k at a time (x or W read down their columns, in the backward). */
static void mlk_bp_pack_b(const uint16_t* b, ptrdiff_t rs, ptrdiff_t ks, ptrdiff_t n,
                          ptrdiff_t k, ptrdiff_t p0, ptrdiff_t p1, uint32_t* packed) {
    ptrdiff_t kp = (k + 1) / 2;
    for (ptrdiff_t p = p0; p < p1; p++) {
        uint32_t* panel = packed + p * kp * MLK_BP_NR;
        const uint16_t* first = b + p * MLK_BP_NR * rs;
        ptrdiff_t cols = n - p * MLK_BP_NR < MLK_BP_NR ? n - p * MLK_BP_NR : MLK_BP_NR;
        if (cols < MLK_BP_NR)
            memset(panel, 0, (size_t)kp * MLK_BP_NR * sizeof(uint32_t));
        if (rs == 1) {                                   /* columns contiguous */
            for (ptrdiff_t q = 0; q < k / 2; q++) {
                const uint16_t* even = first + 2 * q * ks;
                const uint16_t* odd = even + ks;
                for (ptrdiff_t c = 0; c < cols; c++)  /* simd */
                    panel[q * MLK_BP_NR + c] = (uint32_t)even[c] | (uint32_t)odd[c] << 16;
            }
            if (k % 2)
                for (ptrdiff_t c = 0; c < cols; c++)
                    panel[(kp - 1) * MLK_BP_NR + c] = first[(k - 1) * ks + c];
            continue;
        }
        for (ptrdiff_t c = 0; c < cols; c++) {           /* k contiguous (ks == 1) or any */
            const uint16_t* col = first + c * rs;
            for (ptrdiff_t q = 0; q < k / 2; q++)
                panel[q * MLK_BP_NR + c] = (uint32_t)col[2 * q * ks]
                                         | (uint32_t)col[(2 * q + 1) * ks] << 16;
            if (k % 2)
                panel[(kp - 1) * MLK_BP_NR + c] = col[(k - 1) * ks];
        }
    }
}

/* Rows [0, m) of A (m <= MC), values k in [k0, k1), packed in blocks of MR rows: word
 * (block, q, r) = A(block·MR + r, k0 + 2q) | A(.., k0 + 2q + 1) << 16, zero past the ends.
 * As for B, the loops run along A's unit stride (rows of x or g; or g read down its columns). */
static void mlk_bp_pack_a(const uint16_t* a, ptrdiff_t rs, ptrdiff_t ks, ptrdiff_t m,
                          ptrdiff_t k0, ptrdiff_t k1, uint32_t* packed) {
    ptrdiff_t kp = (k1 - k0 + 1) / 2, blocks = (m + MLK_BP_MR - 1) / MLK_BP_MR;
    if (m % MLK_BP_MR)
        memset(packed + (blocks - 1) * kp * MLK_BP_MR, 0, (size_t)kp * MLK_BP_MR * sizeof(uint32_t));
    if (rs == 1) {                                       /* rows contiguous */
        for (ptrdiff_t bl = 0; bl < blocks; bl++) {
            uint32_t* dst = packed + bl * kp * MLK_BP_MR;
            const uint16_t* first = a + bl * MLK_BP_MR + k0 * ks;
            ptrdiff_t rows = m - bl * MLK_BP_MR < MLK_BP_MR ? m - bl * MLK_BP_MR : MLK_BP_MR;
            for (ptrdiff_t q = 0; q < (k1 - k0) / 2; q++) {
                const uint16_t* even = first + 2 * q * ks;
                const uint16_t* odd = even + ks;
                for (ptrdiff_t r = 0; r < rows; r++)
                    dst[q * MLK_BP_MR + r] = (uint32_t)even[r] | (uint32_t)odd[r] << 16;
            }
            if ((k1 - k0) % 2)
                for (ptrdiff_t r = 0; r < rows; r++)
                    dst[(kp - 1) * MLK_BP_MR + r] = first[(k1 - k0 - 1) * ks + r];
        }
        return;
    }
    for (ptrdiff_t i = 0; i < m; i++) {                  /* k contiguous (ks == 1) or any */
        uint32_t* dst = packed + (i / MLK_BP_MR) * kp * MLK_BP_MR + i % MLK_BP_MR;
        const uint16_t* row = a + i * rs;
        for (ptrdiff_t q = 0; q < (k1 - k0) / 2; q++)
            dst[q * MLK_BP_MR] = (uint32_t)row[(k0 + 2 * q) * ks]
                               | (uint32_t)row[(k0 + 2 * q + 1) * ks] << 16;
        if ((k1 - k0) % 2)
            dst[(kp - 1) * MLK_BP_MR] = row[(k1 - 1) * ks];
    }
}

#if MLK_HAVE_BF16_HW_PATH

static inline int mlk_bf16_product_available(void) { return mlk_bf16_hw(); }

/* The micro-kernel: an MR x NR tile of sums over kp pairs, onto c (row stride ldc): c = the
 * sums (+ c if accumulate); only mv rows and nv columns of the tile exist. */
__attribute__((target("avx512bf16")))
static void mlk_bp_tile(ptrdiff_t kp, const uint32_t* ap, const uint32_t* bp, float* c,
                        ptrdiff_t ldc, int accumulate, int mv, int nv) {
    __m512 acc[MLK_BP_MR][2];
    for (int r = 0; r < MLK_BP_MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (ptrdiff_t q = 0; q < kp; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + q * MLK_BP_NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + q * MLK_BP_NR + 16);
        for (int r = 0; r < MLK_BP_MR; r++) {
            __m512bh pair = (__m512bh)_mm512_set1_epi32((int)ap[q * MLK_BP_MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], pair, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], pair, b1);
        }
    }
    if (mv == MLK_BP_MR && nv == MLK_BP_NR) {
        for (int r = 0; r < MLK_BP_MR; r++) {
            float* row = c + r * ldc;
            if (accumulate) {
                acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(row));
                acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(row + 16));
            }
            _mm512_storeu_ps(row, acc[r][0]);
            _mm512_storeu_ps(row + 16, acc[r][1]);
        }
        return;
    }
    float tile[MLK_BP_MR * MLK_BP_NR];                  /* an edge tile: through memory */
    for (int r = 0; r < MLK_BP_MR; r++) {
        _mm512_storeu_ps(tile + r * MLK_BP_NR, acc[r][0]);
        _mm512_storeu_ps(tile + r * MLK_BP_NR + 16, acc[r][1]);
    }
    for (int r = 0; r < mv; r++)
        for (int j = 0; j < nv; j++)
            c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + tile[r * MLK_BP_NR + j];
}

/* One thread's part of C: rows [i0, i1), columns [j0, j1) (j0 a multiple of NR), from the
 * packed B. scratch: mlk_bp_scratch_floats() floats, 64-byte aligned. */
static void mlk_bp_product_block(const uint16_t* a, ptrdiff_t a_rs, ptrdiff_t a_ks,
                                 const uint32_t* b_packed, const float* bias,
                                 ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1,
                                 ptrdiff_t k, float* c32, uint16_t* c16, ptrdiff_t ldc,
                                 float* scratch) {
    ptrdiff_t kp = (k + 1) / 2;
    uint32_t* a_packed = (uint32_t*)scratch;
    float* sums = scratch + (ptrdiff_t)MLK_BP_MC * (MLK_BP_KC / 2);
    for (ptrdiff_t ic = i0; ic < i1; ic += MLK_BP_MC) {
        ptrdiff_t mc = i1 - ic < MLK_BP_MC ? i1 - ic : MLK_BP_MC;
        for (ptrdiff_t jc = j0; jc < j1; jc += MLK_BP_NC) {
            ptrdiff_t nc = j1 - jc < MLK_BP_NC ? j1 - jc : MLK_BP_NC;
            /* the band's sums: in C itself (float32 out) or in L2 scratch (bfloat16 out) */
            float* band = c16 ? sums : c32 + ic * ldc + jc;
            ptrdiff_t ldb = c16 ? nc : ldc;
            for (ptrdiff_t r = 0; r < mc; r++) {        /* start from the bias, or 0 */
                if (bias)
                    memcpy(band + r * ldb, bias + jc, (size_t)nc * sizeof(float));
                else
                    memset(band + r * ldb, 0, (size_t)nc * sizeof(float));
            }
            for (ptrdiff_t kc = 0; kc < k; kc += MLK_BP_KC) {
                ptrdiff_t k1 = kc + MLK_BP_KC < k ? kc + MLK_BP_KC : k, qn = (k1 - kc + 1) / 2;
                mlk_bp_pack_a(a + ic * a_rs, a_rs, a_ks, mc, kc, k1, a_packed);
                for (ptrdiff_t j = jc; j < jc + nc; j += MLK_BP_NR) {
                    const uint32_t* bp = b_packed + ((j / MLK_BP_NR) * kp + kc / 2) * MLK_BP_NR;
                    int nv = (int)(jc + nc - j < MLK_BP_NR ? jc + nc - j : MLK_BP_NR);
                    for (ptrdiff_t r = 0; r < mc; r += MLK_BP_MR)
                        mlk_bp_tile(qn, a_packed + (r / MLK_BP_MR) * qn * MLK_BP_MR, bp,
                                    band + r * ldb + (j - jc), ldb, 1,
                                    (int)(mc - r < MLK_BP_MR ? mc - r : MLK_BP_MR), nv);
                }
            }
            if (c16)                                     /* final: rounded once, to memory */
                for (ptrdiff_t r = 0; r < mc; r++)
                    mlk_narrow(MLK_BF16, band + r * ldb, c16 + (ic + r) * ldc + jc, nc);
        }
    }
}

#else   /* no AVX-512 in this variant: never available, never called */

static inline int mlk_bf16_product_available(void) { return 0; }

static void mlk_bp_product_block(const uint16_t* a, ptrdiff_t a_rs, ptrdiff_t a_ks,
                                 const uint32_t* b_packed, const float* bias,
                                 ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1,
                                 ptrdiff_t k, float* c32, uint16_t* c16, ptrdiff_t ldc,
                                 float* scratch) {
    (void)a; (void)a_rs; (void)a_ks; (void)b_packed; (void)bias; (void)i0; (void)i1;
    (void)j0; (void)j1; (void)k; (void)c32; (void)c16; (void)ldc; (void)scratch;
}

#endif
#endif
