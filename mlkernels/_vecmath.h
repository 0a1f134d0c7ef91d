/* _vecmath.h -- inline, branchless float32 math that GCC vectorizes.
 *
 * Why: libm's expf/erff/tanhf/log1pf are function calls, so a loop calling them stays
 * scalar (10-20x slower than a vectorized loop). These are plain arithmetic plus bit
 * tricks through a union, with every "if" written as a select (?:), so that with
 * -O3 -fno-math-errno -fno-trapping-math the loops that call them vectorize (AVX-512: 16
 * lanes). Each function documents its accuracy, measured against float64 over its whole
 * range by tests/test_vecmath.py, and its limits: NaN in -> NaN out, +-inf -> the limit,
 * no spurious overflow, and relative (not only absolute) accuracy for tiny results.
 *
 * float64 kernels call libm (exp, expm1, log1p, tanh, erfc): correct to ~1 ulp but
 * scalar. The speed goals are float32; vectorized float64 versions are future work.
 *
 * Measured maximum error over the whole range (tests/test_vecmath.py's grid, all ISA variants;
 * for tanh, Phi and softplus the larger figure found over every float32 of the domain):
 *   mlk_expf(x)         e^x                          1.0 ulp
 *   mlk_expm1f(x)       e^x - 1                      1.6 ulp (relative, also near 0)
 *   mlk_log1pf(x)       log(1 + x)                   2.4 ulp (relative, also near 0)
 *   mlk_tanhf(x)        tanh(x)                      1.5 ulp (relative, also near 0)
 *   mlk_sigmoidf(x)     1 / (1 + e^-x)               2.4 ulp (relative, tail included)
 *   mlk_exp_half_sqf(x) e^(-x^2/2), x^2 kept exact   1.1 ulp
 *   mlk_ndtrf(x)        Phi(x), the normal CDF       5.9 ulp (5.7 with FMA; relative, left tail too)
 *   mlk_softplusf(x)    log(1 + e^x)                 2.9 ulp (relative, left tail too)
 * (ulp of the float32 result; results below 1.18e-38 are subnormal and exact only to a
 * few units of 1.4e-45.)
 */
#ifndef MLK_VECMATH_H
#define MLK_VECMATH_H

#include <stdint.h>

/* Always inlined: the vectorizer needs each body inside the loop that calls it. Left to
 * itself, gcc stops inlining once a module has grown by its unit-growth limit, and the
 * loops it left with a call stayed scalar (measured, 1M float32 on one thread: the ELU and
 * SELU forwards took 7.1 and 7.3 ms with the calls, 1.0 and 0.8 ms once inlined). */
#if defined(__GNUC__)
#define MLK_INLINE static inline __attribute__((always_inline))
#else
#define MLK_INLINE static inline
#endif

typedef union { float f; int32_t i; uint32_t u; } mlk_f32bits;

MLK_INLINE float mlk_bits_to_float(int32_t i) { mlk_f32bits b; b.i = i; return b.f; }
MLK_INLINE int32_t mlk_float_to_bits(float f) { mlk_f32bits b; b.f = f; return b.i; }

/* 2^k for integer k in [-252, 254], as the product of two normal powers of two, so that
 * results in the subnormal range are still right (one factor alone would underflow). */
MLK_INLINE float mlk_ldexp_parts(float p, int32_t k) {
    int32_t k1 = k >> 1, k2 = k - k1;           /* both in [-126, 127] */
    return p * mlk_bits_to_float((k1 + 127) << 23) * mlk_bits_to_float((k2 + 127) << 23);
}

/* Round to the nearest integer with the 1.5*2^23 trick (no libm call, vectorizes). */
MLK_INLINE float mlk_round_shift(float t) {
    const float shifter = 12582912.0f;          /* 1.5 * 2^23 */
    return (t + shifter) - shifter;
}

/* e^r - 1 for |r| <= ln2/2: Taylor to degree 7, remainder < 6e-9 relative. */
MLK_INLINE float mlk_expm1_reduced(float r) {
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    return r + r * r * p;
}

static const float MLK_LOG2E = 1.44269504f;
static const float MLK_LN2_HI = 0.693145752f;    /* ln2 with 16 bits: k*LN2_HI is exact */
static const float MLK_LN2_LO = 1.42860677e-6f;  /* ln2 - LN2_HI */

/* e^x = 2^k e^r with k = round(x/ln2), r = x - k ln2 (Cody-Waite: two constants), for
 * finite x in [-104, 89]: no special cases (the callers that need them add them). */
MLK_INLINE float mlk_exp_finite(float x) {
    float k = mlk_round_shift(x * MLK_LOG2E);
    float r = (x - k * MLK_LN2_HI) - k * MLK_LN2_LO;
    return mlk_ldexp_parts(1.0f + mlk_expm1_reduced(r), (int32_t)k);
}

/* e^x: mlk_exp_finite on the clamped argument, then the limits and NaN. */
MLK_INLINE float mlk_expf(float x) {
    float xc = x > 89.0f ? 89.0f : (x < -104.0f ? -104.0f : x);   /* NaN passes through */
    float y = mlk_exp_finite(xc);
    y = x > 88.7228394f ? __builtin_inff() : y;
    y = x < -103.972084f ? 0.0f : y;
    return x != x ? x : y;
}

/* e^-|x| in (0, 1], the form sigmoid, its slope and softplus need: the argument is never
 * positive, so mlk_exp_finite on it clamped at -104 (e^-104 is 0 in float32) needs none of
 * mlk_expf's overflow cases; NaN passes through. */
MLK_INLINE float mlk_exp_neg_absf(float x) {
    float w = -__builtin_fabsf(x);
    return mlk_exp_finite(w < -104.0f ? -104.0f : w);
}

/* e^x - 1 = 2^k (e^r - 1) + (2^k - 1): cancellation-free, full relative accuracy near 0
 * (k = 0 gives e^r - 1 directly). Above x = 24, e^x - 1 rounds to e^x = 2^k e^r, built
 * from the same reduction as mlk_expf (2^k as two factors: 2^k alone overflows at x > 88.4). */
MLK_INLINE float mlk_expm1f(float x) {
    float xc = x > 89.0f ? 89.0f : (x < -30.0f ? -30.0f : x);    /* e^-30 - 1 == -1 */
    float k = mlk_round_shift(xc * MLK_LOG2E);
    float r = (xc - k * MLK_LN2_HI) - k * MLK_LN2_LO;
    float q = mlk_expm1_reduced(r);
    float kc = k > 40.0f ? 40.0f : k;                       /* 2^k exact, also for x > 24 */
    float two_k = mlk_bits_to_float(((int32_t)kc + 127) << 23);
    float y = two_k * q + (two_k - 1.0f);
    y = x > 24.0f ? mlk_ldexp_parts(1.0f + q, (int32_t)k) : y;
    y = x > 88.7228394f ? __builtin_inff() : y;
    y = x == 0.0f ? x : y;                                  /* keeps the sign of -0 */
    return x != x ? x : y;
}

/* log(m) for m in [sqrt(1/2), sqrt(2)): 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172:
 * odd series to s^11, remainder < 1e-10 relative. */
MLK_INLINE float mlk_log_reduced(float m) {
    float s = (m - 1.0f) / (m + 1.0f);
    float s2 = s * s;
    float p = 2.0f / 11.0f;
    p = p * s2 + 2.0f / 9.0f;
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    return 2.0f * s + s * s2 * p;
}

/* log(1 + x): u = 1 + x rounded, log(u) = e ln2 + log(m) with m in [sqrt(1/2), sqrt(2)),
 * plus the correction (x - (u - 1)) / u for the rounding of u (exact near 0). u is never
 * subnormal (x >= -1 makes u = 1 + x exact near 0), so the bit split below is valid. */
MLK_INLINE float mlk_log1pf(float x) {
    float u = 1.0f + x;
    float uc = (u > 0.0f && u < __builtin_inff()) ? u : 1.0f;  /* specials are fixed below */
    int32_t ix = mlk_float_to_bits(uc) + (0x3f800000 - 0x3f3504f3);
    float e = (float)((ix >> 23) - 127);
    float m = mlk_bits_to_float((ix & 0x007fffff) + 0x3f3504f3);
    float corr = (x - (uc - 1.0f)) / uc;
    float y = e * MLK_LN2_HI + (mlk_log_reduced(m) + (e * MLK_LN2_LO + corr));
    y = u == __builtin_inff() ? u : y;
    y = u == 0.0f ? -__builtin_inff() : y;
    y = u < 0.0f ? __builtin_nanf("") : y;
    y = x == 0.0f ? x : y;                                  /* keeps the sign of -0 */
    return x != x ? x : y;
}

/* log(1 + z) for z in [0, 1] (softplus's log1p(e^-|v|)): 2 atanh(s) with s = z/(2 + z) in
 * [0, 1/3], i.e. 2s + s^3 Q(s^2), Q of degree 3 (a relative fit, Lawson-weighted least squares
 * on Chebyshev nodes: 5.4e-9 relative with float32 coefficients). One division and four FMAs,
 * no range reduction and no special cases; relative accuracy down to the smallest z (s = z/2).
 * (A division-free version -- reduction by sqrt(2), a degree-7 polynomial, compensated 1 + z --
 * took 0.50 ns per softplus element against 0.30 ns with this one: 1M floats, one thread,
 * AVX-512; the divider is not where these loops wait, the FMA pipes are.) */
MLK_INLINE float mlk_log1p_unitf(float z) {
    float s = z / (2.0f + z);
    float s2 = s * s;
    float q = 2.801198661e-01f;
    q = q * s2 + 2.800180614e-01f;
    q = q * s2 + 4.002152681e-01f;
    q = q * s2 + 6.666641831e-01f;
    return 2.0f * s + s * (s2 * q);
}

/* softplus(v) = log(1 + e^v) = max(v, 0) + log1p(e^-|v|): never overflows, relative accuracy
 * in the left tail (softplus(v) ~ e^v). Specialised pieces: e^-|v| needs no overflow or NaN
 * cases (NaN passes through), and log1p's argument lies in [0, 1]. (Through the general
 * mlk_expf and mlk_log1pf this took 0.89 ns per element, 0.30 ns this way: one thread,
 * AVX-512, 1M floats.) */
MLK_INLINE float mlk_softplusf(float v) {
    return (v > 0.0f ? v : 0.0f) + mlk_log1p_unitf(mlk_exp_neg_absf(v));
}

/* tanh(x), odd, in two pieces computed side by side and one selected:
 *   |x| < 0.55:  |x| + |x|^3 P(x^2), P of degree 4 (a relative fit, Lawson-weighted least
 *                squares on Chebyshev nodes, 4.4e-9 relative with float32 coefficients):
 *                relative accuracy near 0;
 *   |x| >= 0.55: 1 - 2/(e^(2|x|) + 1): the result is above 0.5, so the subtraction does not
 *                cancel; |x| is clamped at 10, where tanh is 1 in float32;
 * then x's sign is copied on (so tanh(-0) = -0).
 * (It was sign(x) q/(q + 2) with q = expm1(2|x|): expm1's own range cases made it 1.4x a copy
 * of the array, against 1.0-1.2x for the other activations.) NaN passes through both pieces. */
MLK_INLINE float mlk_tanhf(float x) {
    float ax = __builtin_fabsf(x);
    float x2 = x * x;
    float p = -6.274241023e-03f;
    p = p * x2 + 2.107167989e-02f;
    p = p * x2 - 5.385230854e-02f;
    p = p * x2 + 1.333258599e-01f;
    p = p * x2 - 3.333331645e-01f;
    float near0 = ax + ax * (x2 * p);
    float ac = ax > 10.0f ? 10.0f : ax;
    float far = 1.0f - 2.0f / (mlk_exp_finite(ac + ac) + 1.0f);
    return __builtin_copysignf(ax < 0.55f ? near0 : far, x);
}

/* sigma(x) with z = e^-|x| (never overflows): 1/(1+z) for x >= 0, z/(1+z) for x < 0,
 * so tiny results in the left tail keep their relative accuracy. */
MLK_INLINE float mlk_sigmoidf(float x) {
    float z = mlk_exp_neg_absf(x);
    float inv = 1.0f / (1.0f + z);
    float y = x < 0.0f ? z * inv : inv;
    return x != x ? x : y;
}

/* e^(-x^2/2) with x^2 = hi + lo exactly: the rounding of x^2 would cost ~x^2 ulp (40 ulp
 * at |x| = 13); here lo joins the reduced argument instead. With FMA hardware lo is
 * fma(x, x, -hi); without it, a Veltkamp split of x into 12 + 12 bits (which must not be
 * contracted into an FMA -- hence the two paths). */
MLK_INLINE float mlk_exp_half_sq_core(float ax) {          /* ax in [0, 15] */
#ifdef __FMA__
    float hi = ax * ax;
    float lo = __builtin_fmaf(ax, ax, -hi);                 /* exact: x^2 - hi */
#else
    float c = 4097.0f * ax;
    float xh = c - (c - ax);
    float xl = ax - xh;
    float hi = xh * xh;                                     /* exact: 12-bit squared */
    float lo = (2.0f * xh + xl) * xl;
#endif
    float t = -0.5f * hi;                                   /* exact */
    float k = mlk_round_shift(t * MLK_LOG2E);
    float r = ((t - k * MLK_LN2_HI) - k * MLK_LN2_LO) - 0.5f * lo;
    return mlk_ldexp_parts(1.0f + mlk_expm1_reduced(r), (int32_t)k);
}

MLK_INLINE float mlk_exp_half_sqf(float x) {
    float ax = __builtin_fabsf(x);
    ax = ax > 15.0f ? 15.0f : ax;           /* e^-112.5 underflows to 0 (inf included) */
    float y = mlk_exp_half_sq_core(ax);
    return x != x ? x : y;
}

/* erfcx(z) = e^(z^2) erfc(z) for z in [0.49, 11] (where mlk_ndtrf uses it), as t Q(t - 0.4),
 * t = 1/(1 + z/2) in [0.154, 0.803] and Q of degree 8: a relative fit (Lawson-weighted least
 * squares on 6000 Chebyshev nodes against scipy.special.erfcx, coefficients rounded to float32
 * one at a time with the later ones refitted), 1.5e-8 relative before the float32 evaluation.
 * The factor t carries erfcx's 1/z decay and the centring keeps Q's terms from cancelling:
 * the earlier fit, a degree-12 polynomial in t over z in [0, 11], lost ~5 ulp to cancellation
 * near t = 1, and with it Phi needed a second series near 0 wherever this one was used.
 * What is left of Phi's error is mostly the rounding of t, which erfcx's slope doubles near
 * z = 0.5: correcting t·q for the division's rounding (rho = fma(-t, d, 1)) brought Phi from
 * 5.7 to 4.8 ulp but cost 10% of GELU's time (and an FMA that baseline CPUs lack), so not. */
MLK_INLINE float mlk_erfcx_tail(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float s = t - 0.4f;
    float q = -5.925339460e-02f;
    q = q * s + 9.942766279e-02f;
    q = q * s + 4.292932525e-02f;
    q = q * s - 1.469707787e-01f;
    q = q * s - 1.079736128e-01f;
    q = q * s + 2.024862468e-01f;
    q = q * s + 5.060608983e-01f;
    q = q * s + 5.803759694e-01f;
    q = q * s + 4.475028813e-01f;
    return t * q;
}

/* Phi(x) for |x| < 0.7, where the tail formula would cancel: its Taylor series
 * 0.5 + x sum_n (-x^2/2)^n / (sqrt(2 pi) n! (2n + 1)), to n = 6 (remainder < 1e-9 relative). */
MLK_INLINE float mlk_ndtr_near0(float x) {
    float x2 = x * x;
    float p = 6.659693668e-07f;
    p = p * x2 - 9.444655916e-06f;
    p = p * x2 + 1.154346901e-04f;
    p = p * x2 - 1.187328249e-03f;
    p = p * x2 + 9.973556735e-03f;
    p = p * x2 - 6.649038196e-02f;
    p = p * x2 + 3.989422917e-01f;
    return 0.5f + x * p;
}

/* Phi(x) = P(N(0,1) <= x). Away from 0 (|x| >= 0.7) the tail 0.5 erfc(|x|/sqrt2) =
 * 0.5 e^(-x^2/2) erfcx(|x|/sqrt2) is computed directly (relative accuracy: GELU(-10) =
 * -10 Phi(-10) ~ -7.6e-23 keeps its digits), and the right half is 1 - tail; near 0 the series.
 * Both are computed and one selected: no branch. NaN passes through every step (the clamp
 * and the comparisons keep it), so no separate test is needed. */
MLK_INLINE float mlk_ndtrf(float x) {
    float ax = __builtin_fabsf(x);
    float ac = ax > 15.0f ? 15.0f : ax;     /* Phi(-15) underflows to 0 (inf included) */
    float z = ac * 0.707106781f;
    float tail = 0.5f * mlk_exp_half_sq_core(ac) * mlk_erfcx_tail(z);
    float y = x < 0.0f ? tail : 1.0f - tail;
    return ax < 0.7f ? mlk_ndtr_near0(x) : y;
}

#endif
