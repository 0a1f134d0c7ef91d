"""Accuracy of the float32 math core (_vecmath.h) over its whole range, in ulps of the
correctly rounded float32 result, against float64 NumPy/SciPy; and its limits."""
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
