/* _philox.h -- Philox4x32-10, the counter-based random number generator of Salmon, Moraes,
 * Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC 2011).
 *
 * A counter-based generator is a keyed bijection: 128 random bits = Philox(counter, key).
 * It has no state, so any thread computes the bits of any counter directly: a kernel that
 * gives each element its own counter gets the same random numbers for any thread count, any
 * ISA and any split of the work, and a backward pass regenerates exactly the forward's
 * numbers from (key, counter) instead of storing them.
 *
 * The definition (the paper's section 3.4; the constants are its Table 2):
 *   counter (x0, x1, x2, x3), key (k0, k1), all 32-bit words; ten rounds, each
 *       (hi0, lo0) = mulhilo(M0, x0)          the 64-bit product's high and low words
 *       (hi1, lo1) = mulhilo(M1, x2)
 *       (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
 *   with the key bumped between rounds: k0 += W0, k1 += W1 (mod 2^32).
 *   M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9 (golden ratio), W1 = 0xBB67AE85 (√3 − 1).
 * mlk_philox4x32_10 below is that definition, one counter at a time: the readable one, and
 * what tests/test_dropout.py checks against Random123's known-answer vectors.
 *
 * Why it is fast: mlk_philox_tile computes 16 counters at once with SIMD integer
 * arithmetic. Each 32-bit word lives in the low half of a 64-bit lane, because the one
 * vector multiply x86 has for 32x32 -> 64 bits (pmuludq) multiplies the low halves of 64-bit
 * lanes: the product's high word is then a shift, its low word is the product itself (the
 * upper half of a lane is never read by the next multiply, and a xor never carries it down),
 * and the two xors of a round are one ternary-logic instruction with AVX-512. Ten rounds cost
 * 2 multiplies, 2 shifts and 2 xors per counter and round. Branchless, and the same bits
 * with AVX-512 (8 lanes), AVX2 (4), SSE2 (2) or plain C (1 lane, other architectures).
 * GCC does not find pmuludq by itself: written as a plain loop over 32-bit lanes it widened
 * every word to 64 bits and multiplied with the much slower 64x64 vpmullq.
 * Reference: mlkernels/reference/dropout.py (philox4x32_10, in NumPy).
 */
#ifndef MLK_PHILOX_H
#define MLK_PHILOX_H

#include <stddef.h>
#include <stdint.h>

#define MLK_PHILOX_M0 0xD2511F53u
#define MLK_PHILOX_M1 0xCD9E8D57u
#define MLK_PHILOX_W0 0x9E3779B9u
#define MLK_PHILOX_W1 0xBB67AE85u
#define MLK_PHILOX_ROUNDS 10

/* Philox4x32-10 of one counter, in place: ctr <- Philox(ctr, key). */
static inline void mlk_philox4x32_10(uint32_t ctr[4], const uint32_t key[2]) {
    uint32_t x0 = ctr[0], x1 = ctr[1], x2 = ctr[2], x3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int round = 0; round < MLK_PHILOX_ROUNDS; round++) {
        uint64_t p0 = (uint64_t)MLK_PHILOX_M0 * x0, p1 = (uint64_t)MLK_PHILOX_M1 * x2;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0;
        uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
        x1 = (uint32_t)p1;
        x3 = (uint32_t)p0;
        x0 = y0;
        x2 = y2;
        k0 += MLK_PHILOX_W0;
        k1 += MLK_PHILOX_W1;
    }
    ctr[0] = x0; ctr[1] = x1; ctr[2] = x2; ctr[3] = x3;
}

/* ------------------------------------------------------------------ 16 counters at once */
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512i mlk_ph_vec;
#define MLK_PH_LANES 8
#define MLK_PH_SET1(a) _mm512_set1_epi64((long long)(a))
#define MLK_PH_IOTA(base) _mm512_add_epi64(MLK_PH_SET1(base), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0))
#define MLK_PH_MUL(a, b) _mm512_mul_epu32((a), (b))
#define MLK_PH_HI(a) _mm512_srli_epi64((a), 32)
#define MLK_PH_XOR3(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0x96)
#define MLK_PH_STORE32(p, v) _mm256_storeu_si256((__m256i*)(p), _mm512_cvtepi64_epi32(v))
#elif defined(__AVX2__)
#include <immintrin.h>
typedef __m256i mlk_ph_vec;
#define MLK_PH_LANES 4
#define MLK_PH_SET1(a) _mm256_set1_epi64x((long long)(a))
#define MLK_PH_IOTA(base) _mm256_add_epi64(MLK_PH_SET1(base), _mm256_set_epi64x(3, 2, 1, 0))
#define MLK_PH_MUL(a, b) _mm256_mul_epu32((a), (b))
#define MLK_PH_HI(a) _mm256_srli_epi64((a), 32)
#define MLK_PH_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256((a), (b)), (c))
#define MLK_PH_STORE32(p, v) _mm_storeu_si128((__m128i*)(p), _mm256_castsi256_si128( \
    _mm256_permutevar8x32_epi32((v), _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0))))
#elif defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
typedef __m128i mlk_ph_vec;
#define MLK_PH_LANES 2
#define MLK_PH_SET1(a) _mm_set1_epi64x((long long)(a))
#define MLK_PH_IOTA(base) _mm_add_epi64(MLK_PH_SET1(base), _mm_set_epi64x(1, 0))
#define MLK_PH_MUL(a, b) _mm_mul_epu32((a), (b))
#define MLK_PH_HI(a) _mm_srli_epi64((a), 32)
#define MLK_PH_XOR3(a, b, c) _mm_xor_si128(_mm_xor_si128((a), (b)), (c))
#define MLK_PH_STORE32(p, v) _mm_storel_epi64((__m128i*)(p), _mm_shuffle_epi32((v), 0x08))
#else   /* plain C: one 64-bit "lane" */
typedef uint64_t mlk_ph_vec;
#define MLK_PH_LANES 1
#define MLK_PH_SET1(a) ((uint64_t)(a))
#define MLK_PH_IOTA(base) ((uint64_t)(base))
#define MLK_PH_MUL(a, b) (((a) & 0xFFFFFFFFu) * ((b) & 0xFFFFFFFFu))
#define MLK_PH_HI(a) ((a) >> 32)
#define MLK_PH_XOR3(a, b, c) ((a) ^ (b) ^ (c))
#define MLK_PH_STORE32(p, v) (*(p) = (uint32_t)(v))
#endif

#define MLK_PH_TILE 16                              /* counters per tile */
#define MLK_PH_NVEC (MLK_PH_TILE / MLK_PH_LANES)

/* The 64 random words of tile t: counters c = 16t + l (l = 0..15) taken as the 128-bit counter
 * (c mod 2^32, c >> 32, 0, 0), key (k0, k1); word j of counter 16t + l goes to words[16j + l].
 * words must hold 64 uint32. t < 2^60 (c fits 64 bits). */
static inline __attribute__((always_inline)) void
mlk_philox_tile(uint64_t t, uint32_t k0, uint32_t k1, uint32_t* words) {
    const uint64_t first = t * MLK_PH_TILE;            /* its low 4 bits are 0: no carry below */
    const uint32_t c_lo = (uint32_t)first, c_hi = (uint32_t)(first >> 32);
    const mlk_ph_vec m0 = MLK_PH_SET1(MLK_PHILOX_M0), m1 = MLK_PH_SET1(MLK_PHILOX_M1);
    mlk_ph_vec x0[MLK_PH_NVEC], x1[MLK_PH_NVEC], x2[MLK_PH_NVEC], x3[MLK_PH_NVEC];
    for (int v = 0; v < MLK_PH_NVEC; v++) {
        x0[v] = MLK_PH_IOTA(c_lo + (uint32_t)(v * MLK_PH_LANES));
        x1[v] = MLK_PH_SET1(c_hi);
        x2[v] = MLK_PH_SET1(0);
        x3[v] = MLK_PH_SET1(0);
    }
    for (int round = 0; round < MLK_PHILOX_ROUNDS; round++) {
        const mlk_ph_vec ka = MLK_PH_SET1(k0), kb = MLK_PH_SET1(k1);
        for (int v = 0; v < MLK_PH_NVEC; v++) {
            mlk_ph_vec p0 = MLK_PH_MUL(x0[v], m0), p1 = MLK_PH_MUL(x2[v], m1);
            mlk_ph_vec y0 = MLK_PH_XOR3(MLK_PH_HI(p1), x1[v], ka);
            mlk_ph_vec y2 = MLK_PH_XOR3(MLK_PH_HI(p0), x3[v], kb);
            x1[v] = p1;                                  /* lo1: the lane's low word */
            x3[v] = p0;                                  /* lo0 */
            x0[v] = y0;
            x2[v] = y2;
        }
        k0 += MLK_PHILOX_W0;
        k1 += MLK_PHILOX_W1;
    }
    for (int v = 0; v < MLK_PH_NVEC; v++) {
        MLK_PH_STORE32(words + 0 * MLK_PH_TILE + v * MLK_PH_LANES, x0[v]);
        MLK_PH_STORE32(words + 1 * MLK_PH_TILE + v * MLK_PH_LANES, x1[v]);
        MLK_PH_STORE32(words + 2 * MLK_PH_TILE + v * MLK_PH_LANES, x2[v]);
        MLK_PH_STORE32(words + 3 * MLK_PH_TILE + v * MLK_PH_LANES, x3[v]);
    }
}

/* ------------------------------------------------------------------ 16-bit uniforms
 * u[i] for the elements e = e0 + i (i < n): 16 random bits each, eight per counter.
 * Element e sits in tile t = e / 128 at place s = e % 128; its bits are the low half
 * (s < 64) or the high half (s >= 64) of word (s % 64) / 16 of counter 16t + s % 16, i.e. of
 * words[s % 64] of mlk_philox_tile(t). The elements of a tile are contiguous, and so are the
 * words of one half: the split below is two plain vectorized loops.
 * Dropout draws one per element (sixteen bits resolve p to 2^-16 at half the generator's cost
 * of 32 bits: see _dropout.pyx); they are also what a stochastic rounding of float32 to
 * bfloat16 needs. e0 + n <= 2^64. */
#define MLK_PH_U16_PER_TILE 128
static inline void mlk_philox_u16(uint64_t e0, ptrdiff_t n, uint32_t k0, uint32_t k1,
                                  uint16_t* u) {
    uint32_t words[4 * MLK_PH_TILE];
    uint16_t part[MLK_PH_U16_PER_TILE];
    ptrdiff_t done = 0;
    while (done < n) {
        const uint64_t e = e0 + (uint64_t)done;
        const ptrdiff_t skip = (ptrdiff_t)(e % MLK_PH_U16_PER_TILE);
        ptrdiff_t take = MLK_PH_U16_PER_TILE - skip;
        if (take > n - done) take = n - done;
        uint16_t* dst = (take == MLK_PH_U16_PER_TILE) ? u + done : part;
        mlk_philox_tile(e / MLK_PH_U16_PER_TILE, k0, k1, words);
        for (int j = 0; j < 4 * MLK_PH_TILE; j++) {  /* simd */
            dst[j] = (uint16_t)words[j];
            dst[4 * MLK_PH_TILE + j] = (uint16_t)(words[j] >> 16);
        }
        if (dst == part)
            for (ptrdiff_t j = 0; j < take; j++) u[done + j] = part[skip + j];
        done += take;
    }
}

#endif
