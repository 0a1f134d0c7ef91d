"""The battery the most trusted libraries run over every elementwise kernel (NumPy's ufunc
tests, PyTorch's OpInfo), driven by the spec rows tagged "elementwise":

SIMD tail sizes; strided inputs with NaN planted in the gaps; read-only inputs; ``out``
pre-filled with NaN fully overwritten; in place; ``out`` shifted by one element against an
input refused; special values in every lane position; no floating-point warnings for
finite inputs.
"""
import numpy as np
import pytest

from mlkernels.specs import SPECS
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
ROWS = sorted(n for n, s in SPECS.items() if "elementwise" in s.tags)
DTYPES = [np.float32, np.float64]
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 5e-324, 1e20, -1e20, 1.0,
            -1.0, 1e4, -1e4, 30.0, -30.0, 0.5]


def _call(spec, arrays, kwargs, out=None):
    return spec.fast(*arrays, **kwargs) if out is None else spec.fast(*arrays, **kwargs, out=out)


def _ref(spec, arrays, kwargs):
    return spec.reference(*[a.copy() for a in arrays], **kwargs)


def _args(spec, dtype, shape, seed=0):
    args, kwargs = spec.make_args(np.random.default_rng(seed), np.dtype(dtype), shape)
    return list(args), kwargs


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ROWS)
def test_strided_inputs_with_nan_in_the_gaps(name, dtype):
    spec = SPECS[name]
    arrays, kwargs = _args(spec, dtype, (37, 5))
    want = _ref(spec, arrays, kwargs)
    views = []
    for a in arrays:
        big = np.full((a.shape[0], 2 * a.shape[1]), np.nan, dtype)
        big[:, ::2] = a
        views.append(big[:, ::2])
    assert_close(_call(spec, views, kwargs), want, dtype, err_msg="[:, ::2]")
    rev = [np.ascontiguousarray(a[::-1])[::-1] for a in arrays]
    assert_close(_call(spec, rev, kwargs), want, dtype, err_msg="[::-1]")
    tr = [np.ascontiguousarray(a.T).T for a in arrays]
    assert_close(_call(spec, tr, kwargs), want, dtype, err_msg="transposed")
    ro = [a.copy() for a in arrays]
    for a in ro:
        a.flags.writeable = False
    assert_close(_call(spec, ro, kwargs), want, dtype, err_msg="read-only")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ROWS)
def test_out_nan_filled_in_place_and_shifted(name, dtype):
    spec = SPECS[name]
    arrays, kwargs = _args(spec, dtype, (33,))
    want = _ref(spec, arrays, kwargs)
    out = np.full(33, np.nan, dtype)
    assert _call(spec, arrays, kwargs, out) is out
    assert_close(out, want, dtype)
    for i in range(len(arrays)):                 # out = each input: in place
        inputs = [a.copy() for a in arrays]
        assert _call(spec, inputs, kwargs, inputs[i]) is inputs[i]
        assert_close(inputs[i], want, dtype, err_msg=f"in place on input {i}")
    for i in range(len(arrays)):                 # out shifted by one element: refused
        buf = np.concatenate([arrays[i], arrays[i][:1]])
        inputs = list(arrays)
        inputs[i] = buf[:-1]
        before = buf.copy()
        with pytest.raises(ValueError, match="overlaps"):
            _call(spec, inputs, kwargs, buf[1:])
        assert np.array_equal(buf, before, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ROWS)
def test_special_values_in_every_lane(name, dtype):
    spec = SPECS[name]
    n = 67                                       # covers every lane of 16 and a tail
    for k, value in enumerate(SPECIALS):
        arrays, kwargs = _args(spec, dtype, (n,), seed=k)
        for a in arrays:                          # the value in lane positions k, k+17, ...
            a[k % 16::17] = value
        with np.errstate(all="ignore"):          # the reference meets inf·0 on purpose here
            want = _ref(spec, arrays, kwargs)
            got = _call(spec, arrays, kwargs)
        # near the float32 range limits the float64 reference keeps values float32 cannot
        with np.errstate(all="ignore"):
            want32 = np.asarray(want).astype(dtype).astype(np.float64)
        assert_close(got, want32, dtype, err_msg=f"value {value!r}")


@pytest.mark.parametrize("name", ROWS)
def test_finite_inputs_raise_no_floating_point_warnings(name):
    spec = SPECS[name]
    for dtype in DTYPES:
        arrays, kwargs = _args(spec, dtype, (1000,))
        for a in arrays:
            a[:4] = [1e20, -1e20, 80.0, -80.0]
        with np.errstate(all="raise"):
            _call(spec, arrays, kwargs)


def test_sign_of_zero():
    import mlkernels as mk
    z = np.array([0.0, -0.0], np.float32)
    for f in (mk.relu, mk.leaky_relu, mk.elu, mk.selu, mk.tanh, mk.gelu):
        y = f(z)
        assert np.signbit(y[1]) == np.signbit(f(np.array([-0.0], np.float64))[0]), f.__name__


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ROWS)
def test_streamed_outputs(name, dtype, stream_everything, off_line):
    """Through the streaming path (for the ops that take it): sizes around the 512-byte tile
    and the two-thread chunks, out pre-filled with NaN and one element off a line, in place."""
    spec = SPECS[name]
    for n in (1, 67, 40000, 300001):
        arrays, kwargs = _args(spec, dtype, (n,), seed=n)
        want = _ref(spec, arrays, kwargs)
        out = off_line((n,), dtype)              # NaN-filled, one element past a line
        assert _call(spec, arrays, kwargs, out) is out
        assert_close(out, want, dtype, err_msg=f"n={n}")
        inputs = [a.copy() for a in arrays]
        assert _call(spec, inputs, kwargs, inputs[0]) is inputs[0]
        assert_close(inputs[0], want, dtype, err_msg=f"n={n}, in place")
