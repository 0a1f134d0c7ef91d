"""Linear layer: correctness beyond the spec rows (strides, out=, 3-D, hypothesis), bad input,
and the GIL being released."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

# 50x the examples under `pytest --hypothesis-profile=long` (registered in tests/conftest.py)
LONG = 50 if settings.default.max_examples >= 5000 else 1
from hypothesis.extra import numpy as hnp

import mlkernels as mk
from mlkernels import reference as ref
from mlkernels.testing import assert_close, tolerance

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]


def scale(x, w):
    return np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T


def with_nan_gaps(a, rng):
    """A non-contiguous view equal to ``a``, NaN in every element it skips."""
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, a.dtype)
    view = big[..., ::2]
    view[...] = a
    return view


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_transposed_and_negative_strides(dtype, rng):
    x = rng.standard_normal((9, 7)).astype(dtype)
    w = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    want = ref.linear(x, w, b)
    variants = [
        (with_nan_gaps(x, rng), w, b),
        (x, with_nan_gaps(w, rng), with_nan_gaps(b, rng)),
        (np.asfortranarray(x), np.ascontiguousarray(w.T).T, b),
        (x[::-1][::-1], w[::-1][::-1], b[::-1][::-1]),
    ]
    for xs, ws, bs in variants:
        assert_close(mk.linear(xs, ws, bs), want, dtype, scale=scale(x, w) + np.abs(b))
    xr = x[::-1]
    assert_close(mk.linear(xr, w, b), ref.linear(xr, w, b), dtype, scale=scale(xr, w) + np.abs(b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_bias_3d_and_out(dtype, rng):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    w = rng.standard_normal((6, 4)).astype(dtype)
    out = np.full((2, 3, 6), np.nan, dtype)
    y = mk.linear(x, w, out=out)
    assert y is out
    assert_close(out, ref.linear(x, w), dtype, scale=scale(x, w))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_out_is_overwritten_not_accumulated(dtype, rng):
    x = rng.standard_normal((4, 3)).astype(dtype)
    w = rng.standard_normal((2, 3)).astype(dtype)
    g = rng.standard_normal((4, 2)).astype(dtype)
    outs = (np.full((4, 3), 7, dtype), np.full((2, 3), np.nan, dtype), np.full(2, 1e30, dtype))
    got = mk.linear_backward(g, x, w, out=outs)
    assert all(a is b for a, b in zip(got, outs))
    for a, e in zip(got, ref.linear_backward(g, x, w)):
        assert_close(a, e, dtype, atol=1e-5 if dtype == np.float32 else 1e-13)
    gx, gw, gb = mk.linear_backward(g, x, w, bias=False)
    assert gb is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_readonly_inputs_accepted(dtype, rng):
    x = rng.standard_normal((3, 4)).astype(dtype)
    w = rng.standard_normal((2, 4)).astype(dtype)
    for a in (x, w):
        a.flags.writeable = False
    assert_close(mk.linear(x, w), ref.linear(x, w), dtype, scale=scale(x, w))


def test_special_values_propagate():
    x = np.array([[np.inf, 1.0], [np.nan, 0.0], [1e20, -1e20]], np.float64)
    w = np.array([[1.0, 0.0]], np.float64)
    y = mk.linear(x, w)
    assert y[0, 0] == np.inf and np.isnan(y[1, 0]) and y[2, 0] == 1e20


@st.composite
def linear_problems(draw):
    dtype = draw(st.sampled_from(DTYPES))
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    k = draw(st.integers(0, 9))
    n = draw(st.integers(0, 9))
    elements = st.floats(-100, 100, width=32)
    x = draw(hnp.arrays(dtype, lead + (k,), elements=elements))
    w = draw(hnp.arrays(dtype, (n, k), elements=elements))
    b = draw(st.none() | hnp.arrays(dtype, (n,), elements=elements))
    if draw(st.booleans()) and x.ndim >= 2:
        x = np.swapaxes(np.swapaxes(x, 0, -2).copy(), 0, -2)  # non-contiguous, same values
    if draw(st.booleans()):
        w = np.asfortranarray(w)
    return x, w, b


@settings(max_examples=60 * LONG, deadline=None)
@given(linear_problems())
def test_hypothesis_matches_reference(problem):
    x, w, b = problem
    rows = int(np.prod(x.shape[:-1]))
    s = scale(x.reshape(rows, w.shape[1]), w).reshape(x.shape[:-1] + (w.shape[0],))
    if b is not None:
        s = s + np.abs(b)
    assert_close(mk.linear(x, w, b), ref.linear(x, w, b), x.dtype, scale=s)
    g = np.ones(x.shape[:-1] + (w.shape[0],), x.dtype)
    g2, x2 = g.reshape(rows, w.shape[0]), x.reshape(rows, w.shape[1])
    # Each gradient is a sum of K products, whose rounding error is bounded by K·u·Σ|terms|
    # (u = half the dtype's epsilon): dx sums over the n outputs, dW and db over the rows
    # (up to 125 here). A fixed rtol is not that bound: 125 equal terms (x = 45.552982
    # everywhere) round the same way each time, 25u off in float32 (the sanitized run found it).
    u = np.finfo(x.dtype).eps / 2
    K = {"dx": w.shape[0], "dW": rows, "db": rows}
    scales = {"dx": np.abs(g.astype(np.float64)) @ np.abs(w.astype(np.float64)),
              "dW": np.abs(g2.astype(np.float64)).T @ np.abs(x2.astype(np.float64)),
              "db": np.abs(g2.astype(np.float64)).sum(axis=0)}
    got = dict(zip(K, mk.linear_backward(g, x, w)))
    want = dict(zip(K, ref.linear_backward(g, x, w)))
    for name in K:
        rtol = max(tolerance(x.dtype).rtol, K[name] * u)
        assert_close(got[name], want[name], x.dtype, rtol=rtol, scale=scales[name],
                     err_msg=name)


# ---------------------------------------------------------------------------- bad input

def _arrays(dtype=np.float32):
    return (np.ones((3, 4), dtype), np.ones((2, 4), dtype), np.ones(2, dtype))


@pytest.mark.parametrize("bad", [np.int64, np.int32, np.complex64, np.float16, object, bool])
def test_bad_dtypes_are_type_errors(bad):
    x, w, b = _arrays()
    for args in ((x.astype(bad), w, b), (x, w.astype(bad), b), (x, w, b.astype(bad))):
        with pytest.raises(TypeError, match="dtype"):
            mk.linear(*args)
    with pytest.raises(TypeError, match="dtype"):
        mk.linear_backward(np.ones((3, 2), bad), x, w)


def test_mixed_float_dtypes_are_type_errors():
    x, w, b = _arrays()
    with pytest.raises(TypeError, match="float64.*float32|float32.*float64"):
        mk.linear(x, w.astype(np.float64), b)
    with pytest.raises(TypeError, match="float64.*float32|float32.*float64"):
        mk.linear_backward(np.ones((3, 2)), x, w)


def test_non_arrays_are_type_errors():
    x, w, b = _arrays()
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        mk.linear([[1.0] * 4] * 3, w)
    with pytest.raises(TypeError, match="bias must be a numpy.ndarray"):
        mk.linear(x, w, 1.0)


@pytest.mark.parametrize("args,match", [
    ((np.ones((3, 5), np.float32), np.ones((2, 4), np.float32)), "x.shape"),
    ((np.ones((3, 4), np.float32), np.ones(4, np.float32)), "weight has shape"),
    ((np.ones((), np.float32), np.ones((2, 4), np.float32)), "0-d"),
    ((np.ones((3, 4), np.float32), np.ones((2, 4), np.float32), np.ones(3, np.float32)), "bias"),
])
def test_bad_shapes_are_value_errors(args, match):
    with pytest.raises(ValueError, match=match):
        mk.linear(*args)


def test_backward_bad_grad_out_shape():
    x, w, _ = _arrays()
    with pytest.raises(ValueError, match="grad_out has shape"):
        mk.linear_backward(np.ones((3, 3), np.float32), x, w)


def test_bad_out_is_refused_and_untouched():
    x, w, b = _arrays()
    y_ok = np.zeros((3, 2), np.float32)
    readonly = np.zeros((3, 2), np.float32)
    readonly.flags.writeable = False
    cases = [
        (np.zeros((3, 2), np.float64), ValueError, "dtype"),
        (np.zeros((2, 3), np.float32), ValueError, "shape"),
        (readonly, ValueError, "read-only"),
        (np.zeros((3, 4), np.float32)[:, ::2], ValueError, "C-contiguous"),
        ([[0.0, 0.0]] * 3, TypeError, "numpy.ndarray"),
    ]
    for out, exc, match in cases:
        before = np.array(out, copy=True)
        with pytest.raises(exc, match=match):
            mk.linear(x, w, b, out=out)
        assert np.array_equal(np.asarray(out), before)
    assert mk.linear(x, w, b, out=y_ok) is y_ok


def test_out_overlapping_an_input_is_refused():
    buf = np.ones(14, np.float32)
    x = buf[:12].reshape(3, 4)
    w = np.ones((2, 4), np.float32)
    before = buf.copy()
    with pytest.raises(ValueError, match="overlaps"):
        mk.linear(x, w, out=buf[8:14].reshape(3, 2))   # shares x's last row
    with pytest.raises(ValueError, match="overlaps"):
        mk.linear(x, w, out=buf[:6].reshape(3, 2))     # is x's first elements
    assert np.array_equal(buf, before)
    x, w, b = _arrays()
    gx = np.zeros_like(x)
    with pytest.raises(ValueError, match="overlaps"):
        mk.linear_backward(np.ones((3, 2), np.float32), x, w, out=(gx, None, gx[0, :2]))


def test_backward_bad_out_tuple():
    x, w, _ = _arrays()
    with pytest.raises(TypeError, match="tuple"):
        mk.linear_backward(np.ones((3, 2), np.float32), x, w, out=np.zeros_like(x))


def test_huge_dimension_refused_before_blas():
    # a broadcast view: in_features = 2**31 without allocating 8 GiB
    x = np.broadcast_to(np.float32(1), (1, 2**31))
    w = np.broadcast_to(np.float32(1), (1, 2**31))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        mk.linear(x, w)


# ---------------------------------------------------------------------------- GIL

def test_gil_is_released_during_the_kernel():
    """While one thread is inside linear(), another Python thread keeps running.

    If the kernel held the GIL, the main thread could not execute a single bytecode between
    the worker entering and leaving the call, and ``progress`` would stay ~0.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 2048), dtype=np.float32)
    w = rng.standard_normal((2048, 2048), dtype=np.float32)
    inside, done = threading.Event(), threading.Event()

    def worker():
        for _ in range(3):
            inside.set()
            mk.linear(x, w)
        done.set()

    t = threading.Thread(target=worker)
    progress = 0
    t.start()
    inside.wait()
    while not done.is_set():
        progress += 1
    t.join()
    assert progress > 1000, progress
