"""Accuracy of the math core (_vecmath.h) over its whole range: the float32 functions in ulps
of the correctly rounded float32 result, against float64 NumPy/SciPy; the float64 functions in
ulps of the double result, against mpmath; and the limits of both."""
import numpy as np
import pytest
from scipy.special import expit, ndtr

from mlkernels._dispatch import K

pytestmark = pytest.mark.usefixtures("isa")


def _grid(lo, hi, n=400_001):
    """Every float32 magnitude scale between lo and hi, densely (plus linear coverage)."""
    lin = np.linspace(lo, hi, n)
    pos = np.geomspace(1e-30, max(abs(lo), abs(hi)), n)
    x = np.concatenate([lin, pos, -pos]).astype(np.float32)
    return x[(x >= lo) & (x <= hi)]


def ulps(got, exact):
    """|got − exact| in units of the float32 spacing at the exact result (tiny results: in
    units of the smallest normal's spacing, i.e. absolute below 1.2e-38)."""
    exact32 = np.abs(exact).astype(np.float32)
    spacing = np.spacing(np.maximum(exact32, np.float32(1.1754944e-38))).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


CASES = {   # name: (oracle in float64, domain, documented bound in ulp)
    "expf": (np.exp, (-104.0, 88.7), 2),
    "expm1f": (np.expm1, (-30.0, 88.7), 2),
    "log1pf": (np.log1p, (-0.9999999, 3e38), 3),
    "tanhf": (np.tanh, (-30.0, 30.0), 3),
    "sigmoidf": (expit, (-104.0, 104.0), 3),
    "exp_half_sqf": (lambda x: np.exp(-0.5 * x * x), (-14.0, 14.0), 3),
    "ndtrf": (ndtr, (-13.0, 13.0), 6),
    "softplusf": (lambda x: np.logaddexp(0.0, x), (-104.0, 88.0), 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_accuracy_in_ulps(name):
    oracle, (lo, hi), bound = CASES[name]
    x = _grid(lo, hi)
    got = K._activations.vecmath(name, x)
    with np.errstate(all="ignore"):
        exact = oracle(x.astype(np.float64))
    err = ulps(got, exact)
    worst = int(np.argmax(err))
    assert err.max() <= bound, (f"{name}: {err.max():.2f} ulp at x = {x[worst]!r} "
                                f"(got {got[worst]!r}, exact {exact[worst]!r})")


@pytest.mark.parametrize("name", sorted(CASES))
def test_limits_and_special_values(name):
    oracle = CASES[name][0]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-30, 3.4e38, -3.4e38],
                 np.float32)
    got = K._activations.vecmath(name, x)
    with np.errstate(all="ignore"):
        exact = oracle(x.astype(np.float64)).astype(np.float32)
    assert np.isnan(got[0])
    same = ~np.isnan(exact)
    # ±0 keep their sign where the function is odd at 0 (the oracle says which)
    np.testing.assert_array_equal(np.signbit(got[same]), np.signbit(exact[same]))
    assert np.all(np.isnan(got[~same]) | (got[~same] == exact[~same]))
    big = ~np.isfinite(exact) & same
    assert np.array_equal(got[big], exact[big])       # overflow only where the answer is inf


def test_tiny_results_keep_relative_accuracy():
    """Tiny but normal results keep ~float32 relative accuracy; subnormal ones (below
    1.18e-38, where float32 itself has fewer bits) are right to a few units of 1.4e-45."""
    x = np.array([-10.0, -12.0], np.float32)
    np.testing.assert_allclose(K._activations.vecmath("ndtrf", x), ndtr(x.astype(np.float64)),
                               rtol=1e-6)
    s = K._activations.vecmath("sigmoidf", np.array([-80.0], np.float32))
    np.testing.assert_allclose(s, expit(np.array([-80.0])), rtol=1e-6)
    sub = np.array([-13.0, -13.5], np.float32)
    tiny = np.float64(np.finfo(np.float32).smallest_subnormal)
    assert np.all(np.abs(K._activations.vecmath("ndtrf", sub) - ndtr(sub.astype(np.float64)))
                  <= 4 * tiny)
    s = K._activations.vecmath("sigmoidf", np.array([-100.0], np.float32))
    assert abs(s[0] - expit(-100.0)) <= 4 * tiny


# ------------------------------------------------------------------ float64
# The oracle is mpmath at 40 digits, its value kept as a double-double (hi + lo) so that
# errors well under an ulp are measured. mpmath costs 10-70 µs a point, so the grid is
# built to cover every magnitude scale with few points: log-spaced magnitudes over the whole
# domain, random points in every binade where the function does its work, uniform points
# over the range where its reduction steps and pieces change, and the worst points found
# while building the functions. It is computed once per session, for every ISA variant.
try:
    import mpmath as mp
except ImportError:                      # the test extra brings it
    mp = None
needs_mpmath = pytest.mark.skipif(mp is None, reason="mpmath (pip install .[test]) is missing")

CASES64 = {   # name: (mpmath oracle, domain, binades [2^a, 2^b) sampled densely, bound in ulp)
    "exp": (lambda x: mp.exp(x), (-746.0, 710.0), (-30, 10), 1.0),
    "expm1": (lambda x: mp.expm1(x), (-60.0, 710.0), (-30, 10), 1.0),
    "log1p": (lambda x: mp.log1p(x), (-1.0, 1.7e308), (-30, 1024), 1.0),
    "tanh": (lambda x: mp.tanh(x), (-30.0, 30.0), (-30, 5), 2.0),
    "sigmoid": (lambda x: 1 / (1 + mp.exp(-x)), (-760.0, 760.0), (-30, 10), 2.0),
    "exp_half_sq": (lambda x: mp.exp(-x * x / 2), (-40.0, 40.0), (-30, 6), 1.5),
    "ndtr": (lambda x: mp.ncdf(x), (-40.0, 40.0), (-30, 6), 4.0),
    "softplus": (lambda x: mp.log1p(mp.exp(x)), (-760.0, 760.0), (-30, 10), 2.0),
}
WORST64 = {   # the largest errors found on denser grids while building (regressions)
    "exp": [0.3750206891152197, -708.2015221138367],
    "expm1": [0.36793725824390267, 0.3779892233769222, 37.21980124798408],
    "log1p": [-0.29553230670879627, 0.60089146502755764],
    "tanh": [-0.24666228714881999, -0.2067533580929406, -0.061944072647602155],
    "sigmoid": [-3.440912715820815, -3.4571250743478075, -1.9823455433897763],
    "exp_half_sq": [-3.98929983887178, 28.609491175212796],
    "ndtr": [-13.676369324217521, -21.562075010835414, -37.35322298776065, -1.9546941973946081],
    "softplus": [-0.45914455651754515, -0.436316954373833],
}
TINY64 = 2.2250738585072014e-308                 # the smallest normal double


def _grid64(name):
    _, (lo, hi), (b0, b1), _ = CASES64[name]
    rng = np.random.default_rng(1234)
    big = max(abs(lo), abs(hi))
    mags = np.concatenate([[5e-324, 1e-320, 1e-310], np.geomspace(1e-300, big, 3000)])
    binades = 2.0 ** np.arange(b0, min(b1, 1023))
    dense = (binades[:, None] * rng.uniform(1, 2, (binades.size, 60))).ravel()
    span = (max(lo, -40.0), min(hi, 40.0))
    x = np.concatenate([mags, -mags, dense, -dense, rng.uniform(*span, 6000),
                        rng.uniform(lo, hi, 1000), WORST64[name]])
    return np.unique(x[(x >= lo) & (x <= hi)])


@pytest.fixture(scope="session")
def oracle64():
    """name -> (x, exact hi, exact lo), computed on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            f = CASES64[name][0]
            x = _grid64(name)
            hi, lo = np.empty_like(x), np.empty_like(x)
            with mp.workdps(40):
                for i, v in enumerate(x.tolist()):
                    e = f(mp.mpf(v))
                    hi[i] = float(e)
                    lo[i] = float(e - mp.mpf(hi[i])) if np.isfinite(hi[i]) else 0.0
            cache[name] = (x, hi, lo)
        return cache[name]
    return get


def ulps64(got, hi, lo):
    """|got − exact| in units of the double spacing at the exact result hi + lo (results
    below the smallest normal: in units of 4.9e-324)."""
    spacing = np.spacing(np.maximum(np.abs(hi), TINY64))
    with np.errstate(invalid="ignore"):
        return np.abs((got - hi) - lo) / spacing


@needs_mpmath
@pytest.mark.parametrize("name", sorted(CASES64))
def test_float64_accuracy_in_ulps(name, oracle64):
    x, hi, lo = oracle64(name)
    bound = CASES64[name][3]
    got = K._activations.vecmath(name, x)
    assert got.dtype == np.float64
    finite = np.isfinite(hi)
    np.testing.assert_array_equal(got[~finite], hi[~finite])   # overflow exactly where due
    err = ulps64(got[finite], hi[finite], lo[finite])
    normal = np.abs(hi[finite]) >= TINY64
    worst = int(np.argmax(np.where(normal, err, 0)))
    assert err[normal].max() <= bound, (
        f"{name}: {err[worst]:.3f} ulp at x = {x[finite][worst]!r} "
        f"(got {got[finite][worst]!r}, exact {hi[finite][worst]!r})")
    # subnormal results: right to a unit or two of 4.9e-324 (rounded twice at most)
    assert np.all(err[~normal] <= 2), f"{name}: subnormal results off by {err[~normal].max()}"


SPECIALS64 = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300,
                       1.7e308, -1.7e308, 1e20, -1e20])


@pytest.mark.parametrize("name", sorted(CASES64))
def test_float64_limits_and_special_values(name):
    """NaN -> NaN, ±inf -> the limits, huge |x| never overflows where the result is finite,
    ±0 keep their sign where the function is odd at 0 -- as the float32 core does (the
    oracle: NumPy/SciPy's double functions)."""
    oracle = {"exp": np.exp, "expm1": np.expm1, "log1p": np.log1p, "tanh": np.tanh,
              "sigmoid": expit, "exp_half_sq": lambda x: np.exp(-0.5 * x * x), "ndtr": ndtr,
              "softplus": lambda x: np.logaddexp(0.0, x)}[name]
    got = K._activations.vecmath(name, SPECIALS64)
    with np.errstate(all="ignore"):
        exact = oracle(SPECIALS64)
    assert np.isnan(got[0])
    same = ~np.isnan(exact)
    np.testing.assert_array_equal(np.signbit(got[same]), np.signbit(exact[same]))
    assert np.all(np.isnan(got[~same]))
    big = ~np.isfinite(exact) & same
    np.testing.assert_array_equal(got[big], exact[big])
    np.testing.assert_allclose(got[same & ~big], exact[same & ~big], rtol=1e-15, atol=0)
    with np.errstate(all="raise"):               # finite input: no floating-point warning
        K._activations.vecmath(name, SPECIALS64[3:])


def test_float64_every_simd_tail_matches_elementwise():
    """The vectorized loop and its scalar remainder give the same result for each element,
    whatever its position (sizes 1..33 and an offset start)."""
    x = np.random.default_rng(5).standard_normal(40) * 5
    for name in sorted(CASES64):
        whole = K._activations.vecmath(name, x)
        for n in (1, 7, 8, 9, 15, 16, 17, 31, 33):
            np.testing.assert_array_equal(K._activations.vecmath(name, x[:n]), whole[:n])
            np.testing.assert_array_equal(K._activations.vecmath(name, x[3:3 + n]),
                                          whole[3:3 + n])


def test_exp_nonpositive_is_expf_on_its_range():
    """mlk_exp_nonposf (softmax's e^(x − max), ELU's slope) gives mlk_expf's bits for every
    x ≤ 0 and NaN: its clamp at −104 replaces mlk_expf's limits. Every 127th float32 with the
    sign bit set, and every one in the ranges where the results turn subnormal and then 0."""
    patterns = [np.arange(0x80000000, 0x100000000, 127, dtype=np.uint64),
                np.arange(0xC2AE0000, 0xC2D10000, dtype=np.uint64)]   # −87 .. −104.5
    x = np.concatenate(patterns).astype(np.uint32).view(np.float32)
    x = np.concatenate([x, np.float32([0.0, -0.0, -np.inf, np.nan, -np.nan])])
    got = K._activations.vecmath("exp_nonposf", x)
    want = K._activations.vecmath("expf", x)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    differ = np.flatnonzero(got[~nan].view(np.uint32) != want[~nan].view(np.uint32))
    assert differ.size == 0, (f"{differ.size} values differ, first x = {x[~nan][differ[0]]!r}")
    assert got[-5:-2].tolist() == [1.0, 1.0, 0.0]


def test_ndtr_and_gelu_keep_the_sign_of_nan():
    """Φ(NaN) is x's own NaN, so GELU's x·Φ(x) and its backward give x's NaN at every
    position, in the vector loop and in the scalar tail alike (through the tail formula Φ's
    NaN came out positive, and which operand's NaN a product keeps differed between the two)."""
    import mlkernels as mk
    for n in range(1, 41):
        for negative in (False, True):
            x = np.full(n, np.nan, np.float32)
            if negative:
                x = -x
            for got in (K._activations.vecmath("ndtrf", x), mk.gelu(x),
                        mk.gelu_backward(np.ones(n, np.float32), x)):
                assert np.isnan(got).all()
                assert (np.signbit(got) == negative).all(), (n, negative, np.signbit(got))
