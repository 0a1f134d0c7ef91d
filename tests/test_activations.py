"""Activations beyond the spec rows: bad input, PReLU layouts, hypothesis over shapes and
values, and the worked values from the issue."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

# 50x the examples under `pytest --hypothesis-profile=long` (registered in tests/conftest.py)
LONG = 50 if settings.default.max_examples >= 5000 else 1
from hypothesis.extra import numpy as hnp

import mlkernels as mk
from mlkernels import reference as ref
from mlkernels.specs.activations import FUNCTIONS
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
UNARY = list(FUNCTIONS)           # every activation of the table (mlkernels/_activation_table.py)


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("bad", [np.int32, np.int64, np.float16, np.complex64, object, bool])
def test_bad_dtypes(name, bad):
    """float16 is 16-bit storage (tests/test_half_activations.py), taken alone, refused mixed."""
    f, fb = getattr(mk, name), getattr(mk, name + "_backward")
    x = np.ones(5, bad)
    if bad is not np.float16:
        with pytest.raises(TypeError, match="dtype"):
            f(x)
    with pytest.raises(TypeError, match="dtype"):
        fb(np.ones(5, np.float32), x)


@pytest.mark.parametrize("name", UNARY)
def test_bad_out_and_mixed_dtypes_write_nothing(name):
    f, fb = getattr(mk, name), getattr(mk, name + "_backward")
    x = np.linspace(-2, 2, 6).astype(np.float32)
    ro = np.zeros(6, np.float32)
    ro.flags.writeable = False
    for out, exc, match in [(np.zeros(6, np.float64), ValueError, "dtype"),
                            (np.zeros(5, np.float32), ValueError, "shape"),
                            (ro, ValueError, "read-only"),
                            (np.zeros(12, np.float32)[::2], ValueError, "C-contiguous"),
                            ([0.0] * 6, TypeError, "ndarray")]:
        before = np.array(out, copy=True)
        with pytest.raises(exc, match=match):
            f(x, out=out)
        with pytest.raises(exc, match=match):
            fb(x, x, out=out)
        assert np.array_equal(np.asarray(out), before)
    with pytest.raises(TypeError, match="float64.*float32|float32.*float64"):
        fb(x.astype(np.float64), x)
    with pytest.raises(ValueError, match="grad_out has shape"):
        fb(x[:5], x)
    with pytest.raises(TypeError, match="ndarray"):
        f([1.0, 2.0])


def test_bad_parameters():
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="approximate"):
        mk.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="approximate"):
        mk.gelu_backward(x, x, approximate=None)
    with pytest.raises(ValueError, match="beta"):
        mk.softplus(x, beta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        mk.elu(x, alpha=float("nan"))
    with pytest.raises(TypeError, match="negative_slope"):
        mk.leaky_relu(x, negative_slope="0.1")


def test_prelu_weight_shapes():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    for w in (np.array([0.2], np.float32), np.array([0.1, 0.2, 0.3], np.float32)):
        assert_close(mk.prelu(x, w), ref.prelu(x, w), np.float32)
        g = np.ones_like(x)
        for a, e in zip(mk.prelu_backward(g, x, w), ref.prelu_backward(g, x, w)):
            assert_close(a, e, np.float32, rtol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        mk.prelu(x, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="1-d"):
        mk.prelu(x, np.ones((3, 1), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        mk.prelu(x, np.ones(3, np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prelu_backward_in_place(dtype):
    # out=(grad_out, None) is allowed: grad_weight must come from grad_out before it is
    # overwritten (it came out scaled by the slope). Rows longer than one block of the kernel
    # (256 values), and NaN, ±0 and ±inf among x.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 700)).astype(dtype)
    x[0, 0, :4] = [np.nan, -0.0, np.inf, -np.inf]
    w = np.array([0.25, 3.0], dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    expect_gx, expect_gw = mk.prelu_backward(g, x, w)
    gx, gw = mk.prelu_backward(g, x, w, out=(g, None))
    assert gx is g
    np.testing.assert_array_equal(gx, expect_gx)
    np.testing.assert_array_equal(gw, expect_gw)
    x[0, 0, :4] = 1
    for a, e in zip(mk.prelu_backward(g, x, w), ref.prelu_backward(g, x, w)):
        assert_close(a, e, dtype, rtol=1e-5)


def test_worked_values():
    x = np.array([-10.0, -1.0, 0.0, 1.0, 3.0])
    # GELU(-10) = -10·Φ(-10) ≈ -7.6198530e-23: relative accuracy in the tail, both dtypes
    for dtype in (np.float32, np.float64):
        y = mk.gelu(x.astype(dtype))
        assert abs(y[0] / -7.619853024160526e-23 - 1) < 1e-5
    assert np.array_equal(mk.relu_backward(np.ones(3), np.array([-1.0, 0.0, 1.0])), [0, 0, 1])
    sel = mk.selu(np.array([1.0, -1.0]))
    assert_close(sel, [1.0507009873554805, 1.0507009873554805 * 1.6732632423543772 * np.expm1(-1)],
                 np.float64)


@settings(max_examples=60 * LONG, deadline=None)
@given(name=st.sampled_from(UNARY), dtype=st.sampled_from([np.float32, np.float64]),
       x=st.data())
def test_hypothesis_shapes_and_values(name, dtype, x):
    arr = x.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                    max_side=6),
                            elements=st.floats(-50, 50, width=32)))
    f, fb = getattr(mk, name), getattr(mk, name + "_backward")
    assert_close(f(arr), getattr(ref, name)(arr), dtype)
    g = np.ones_like(arr)
    assert_close(fb(g, arr), getattr(ref, name + "_backward")(g, arr), dtype)


def test_docstring_examples_run():
    """Every public function of mlkernels.activations has a numpydoc docstring (generated from
    the table's rows) whose Examples run (with doctest here: pytest's own doctest collector is
    not configured for the package)."""
    import doctest
    import mlkernels.activations as activations
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for name in activations.__all__:
        doc = getattr(activations, name).__doc__
        for section in ("Parameters", "Returns", "Raises", "Examples"):
            assert f"\n    {section}\n    {'-' * len(section)}\n" in doc, (name, section)
        examples = finder.find(getattr(activations, name), name, globs={})
        assert examples and examples[0].examples, name
        for example in examples:
            runner.run(example)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 2 * len(activations.__all__) and result.failed == 0
    # the module as `pytest --doctest-modules` walks it: every global, the kernel dispatcher K
    # included (inspect asks it for __wrapped__, which must be an AttributeError)
    assert len(finder.find(activations)) >= len(activations.__all__)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_and_mish_as_torch_at_the_kinks(dtype):
    """hardswish, hardsigmoid and mish against PyTorch's kernels, forward and backward, at
    the kinks ±3, one float step either side of them, 0 and -0, and across the range."""
    torch = pytest.importorskip("torch")
    t = dtype(3)
    x = np.concatenate([[-t, np.nextafter(-t, -4 * t), np.nextafter(-t, 0), -0.0, 0.0,
                         np.nextafter(t, 0), t, np.nextafter(t, 4 * t)],
                        np.linspace(-8, 8, 97)]).astype(dtype)
    g = np.random.default_rng(0).standard_normal(x.size).astype(dtype)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    aten = torch.ops.aten
    for name in ("hardswish", "hardsigmoid", "mish"):
        want = getattr(torch.nn.functional, name)(tx).numpy()
        assert_close(getattr(mk, name)(x), want, dtype, err_msg=name)
        want = getattr(aten, name + "_backward")(tg, tx).numpy()
        # torch's float64 hardsigmoid backward multiplies by 1/6 rounded to float32
        tol = {"rtol": 1e-7} if (name, dtype) == ("hardsigmoid", np.float64) else {}
        assert_close(getattr(mk, name + "_backward")(g, x), want, dtype, err_msg=name, **tol)
    # the kinks themselves, as torch: hardswish' is 0 at -3 and 1 at 3, hardsigmoid' 0 at both
    ones = np.ones(2, dtype)
    kinks = np.array([-3.0, 3.0], dtype)
    assert mk.hardswish_backward(ones, kinks).tolist() == [0.0, 1.0]
    assert mk.hardsigmoid_backward(ones, kinks).tolist() == [0.0, 0.0]


def test_hard_and_mish_special_values():
    """NaN passes through both directions (torch's backwards disagree between their scalar
    and vector loops there); ±inf give the limits where they exist."""
    x = np.array([np.nan, np.inf, -np.inf, 1e20, -1e20, 1e-40], np.float32)
    g = np.ones_like(x)
    for dtype in (np.float32, np.float64):
        xd, gd = x.astype(dtype), g.astype(dtype)
        assert np.isnan(mk.hardswish(xd)[0]) and np.isnan(mk.hardswish_backward(gd, xd)[0])
        assert np.isnan(mk.hardsigmoid(xd)[0]) and np.isnan(mk.hardsigmoid_backward(gd, xd)[0])
        assert np.isnan(mk.mish(xd)[0]) and np.isnan(mk.mish_backward(gd, xd)[0])
        assert mk.hardswish(xd)[1] == np.inf and mk.hardsigmoid(xd)[1:3].tolist() == [1, 0]
        assert mk.hardswish_backward(gd, xd)[1:5].tolist() == [1, 0, 1, 0]
        assert mk.mish(xd)[1] == np.inf and mk.mish(xd)[3] == xd[3]
        assert mk.mish_backward(gd, xd)[3:5].tolist() == [1, 0]
