"""bfloat16 products on AVX-512 BF16 (vdpbf16ps, mlkernels/_bf16_product.h): linear and
linear_backward on bfloat16 operands, and the kernel itself over shapes, strides and blocking
edges. The products of bfloat16 values are exact in float32 and summed in float32 in an order
of the kernel's own, so results are checked against the float64 product with the error bound
of a float32 sum of k terms (k·2^-23 of Σ|a·b|, twice the usual first-order bound), plus half
a bfloat16 unit (2^-8 relative) when the result is rounded to bfloat16. Skipped on variants
and CPUs without AVX-512 BF16 (the widening path is tests/test_half_kernels.py's).
"""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import mlkernels as mk
from mlkernels import _dispatch

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture
def product(isa):
    """The variant's kernel module, when it computes bfloat16 products (else skip)."""
    linear = _dispatch.K._linear
    if not linear.bf16_product_available():
        pytest.skip(f"no vdpbf16ps bfloat16 product on the {isa} variant of this CPU")
    return linear


def bf16(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(BF16)


def f64(a):
    return np.asarray(a).astype(np.float64)


def check(got, a, b, bias=None, rounded=True):
    """got ≈ a·bᵀ (+ bias) within float32 summation (and bfloat16 rounding) error."""
    a, b = f64(a), f64(b)
    exact = a @ b.T + (0 if bias is None else f64(bias))
    size = np.abs(a) @ np.abs(b).T + (0 if bias is None else np.abs(f64(bias)))
    k = a.shape[-1] + 1
    bound = 2.0 * k * 2.0 ** -24 * size + (2.0 ** -8 * np.abs(exact) if rounded else 0)
    err = np.abs(f64(got) - exact)
    assert np.all(err <= bound), (err.max(), bound[err > bound][:5])


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 1, 5), (0, 4, 5), (4, 0, 5), (5, 7, 3),
                                   (9, 257, 33), (65, 300, 70), (300, 64, 1100)], ids=str)
def test_linear_forward(product, shape):
    m, n_in, n_out = shape
    x, w, b = bf16((m, n_in), 0), bf16((n_out, n_in), 1, 0.3), bf16(n_out, 2)
    for bias in (b, None):
        y = mk.linear(x, w, bias)
        assert y.dtype == BF16 and y.shape == (m, n_out)
        check(y, x, w, bias)
        y32 = np.empty((m, n_out), np.float32)
        assert mk.linear(x, w, bias, out=y32) is y32
        check(y32, x, w, bias, rounded=False)
        # rounding is the last step: the bfloat16 result is the float32 one, rounded
        np.testing.assert_array_equal(y.view(np.uint16), y32.astype(BF16).view(np.uint16))


@pytest.mark.parametrize("shape", [(1, 1, 1), (0, 4, 5), (5, 7, 3), (2, 3, 33, 17),
                                   (300, 64, 48), (1030, 40, 9)], ids=str)
def test_linear_backward(product, shape):
    *lead, n_in, n_out = shape
    x, w = bf16(tuple(lead) + (n_in,), 0), bf16((n_out, n_in), 1)
    g = bf16(tuple(lead) + (n_out,), 3)
    gx, gw, gb = mk.linear_backward(g, x, w, bias=True)
    g2, x2 = g.reshape(-1, n_out), x.reshape(-1, n_in)
    assert gx.dtype == gw.dtype == gb.dtype == BF16
    check(gx.reshape(-1, n_in), g2, w.T)
    check(gw, g2.T, x2.T)
    # grad_bias: the widened gradient summed in double (as float32's), rounded once
    np.testing.assert_array_equal(
        gb.view(np.uint16),
        mk.linear_backward(g.astype(np.float32), x.astype(np.float32),
                           w.astype(np.float32))[2].astype(BF16).view(np.uint16))
    outs = (np.empty(x.shape, np.float32), np.empty(w.shape, np.float32),
            np.empty(n_out, np.float32))
    got = mk.linear_backward(g, x, w, out=outs)
    assert all(a is b for a, b in zip(got, outs))
    check(outs[1], g2.T, x2.T, rounded=False)
    gx, gw, gb = mk.linear_backward(g, x, w, bias=False, compute_grad_x=False)
    assert gx is None and gb is None
    check(gw, g2.T, x2.T)


def test_strided_and_non_contiguous_inputs(product):
    x, w = bf16((40, 2 * 70), 0)[:, ::2], bf16((50, 70), 1).T.copy().T   # a strided x, an F-order w
    check(mk.linear(x, w), x, w)


def test_specials_propagate_and_subnormals_count_as_zero(product):
    x, w = bf16((16, 40), 0), bf16((33, 40), 1)
    x[3, 7], x[5, 0], w[9, 39] = np.nan, np.inf, -np.inf
    y = mk.linear(x, w).astype(np.float64)
    assert np.isnan(y[3]).all()                                  # NaN·anything
    assert np.all(np.isinf(y[5]) | np.isnan(y[5]))               # inf, or NaN where inf - inf
    assert np.isnan(y[5, 9]) or np.isinf(y[5, 9])
    assert np.all(np.isinf(y[:, 9][[i for i in range(16) if i not in (3, 5)]]))
    # vdpbf16ps treats subnormal inputs as zero (docs/kernels/bf16.md): 2^-130 · 2^10 counts as 0
    tiny = np.full((1, 2), 2.0 ** -130, np.float32).astype(BF16)
    big = np.full((1, 2), 2.0 ** 10, np.float32).astype(BF16)
    assert float(mk.linear(tiny, big, out=np.empty((1, 1), np.float32))[0, 0]) == 0.0


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 140), n=st.integers(0, 1100), k=st.integers(0, 2200),
       a_by_columns=st.booleans(), b_by_columns=st.booleans(), seed=st.integers(0, 2**31),
       threads=st.sampled_from([1, 2]))
@example(m=70, n=40, k=2100, a_by_columns=False, b_by_columns=False, seed=1, threads=2)
@example(m=70, n=40, k=2100, a_by_columns=True, b_by_columns=True, seed=2, threads=1)
def test_kernel_over_shapes_strides_and_blocks(m, n, k, a_by_columns, b_by_columns, seed, threads):
    """The kernel with A and B read along rows or down columns (the three products of a
    linear layer), across the MR = 8 / NR = 32 tile edges, KC = 256 blocks of k (and odd k),
    MC = 64-row bands and NC = 1024-column groups; the same bits for 1 and 2 threads."""
    linear = _dispatch.K._linear
    if not linear.bf16_product_available():
        return
    a = bf16((k, m) if a_by_columns else (m, k), seed)
    b = bf16((k, n) if b_by_columns else (n, k), seed + 1)
    a_rs, a_ks = (1, m) if a_by_columns else (k, 1)
    b_rs, b_ks = (1, n) if b_by_columns else (k, 1)
    A, B = (a.T if a_by_columns else a), (b.T if b_by_columns else b)
    c = np.full((m, n), np.nan, np.float32)
    linear.bf16_product(a.view(np.uint16), a_rs, a_ks, b.view(np.uint16), b_rs, b_ks, m, n, k,
                        None, c, threads)
    check(c, A, B, rounded=False)
    c16 = np.zeros((m, n), np.uint16)
    linear.bf16_product(a.view(np.uint16), a_rs, a_ks, b.view(np.uint16), b_rs, b_ks, m, n, k,
                        None, c16, 3 - threads)
    np.testing.assert_array_equal(c16, c.astype(BF16).view(np.uint16))


def test_widening_path_still_exact(product, monkeypatch):
    """With the product turned off, bfloat16 linear is float32 linear rounded, bit for bit."""
    import sys
    monkeypatch.setattr(sys.modules["mlkernels.linear"], "_BF16_PRODUCT", False)
    x, w = bf16((9, 33), 0), bf16((7, 33), 1)
    np.testing.assert_array_equal(
        mk.linear(x, w).view(np.uint16),
        mk.linear(x.astype(np.float32), w.astype(np.float32)).astype(BF16).view(np.uint16))


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "silu", "mish"])
def test_linear_fused_activation(product, act):
    """bf16 linear(..., activation=): the product (vdpbf16ps) into float32, the float32
    activation on it, each of y and z rounded once."""
    import mlkernels.activations as A
    from mlkernels.activations import FUSED_WITH_LINEAR
    x, w, b = bf16((70, 130), 0), bf16((45, 130), 1, 0.3), bf16(45, 2)
    y, z = mk.linear(x, w, b, activation=act, return_preactivation=True)
    z32 = mk.linear(x, w, b, out=np.empty((70, 45), np.float32))
    _, name, kw = FUSED_WITH_LINEAR[act]
    y32 = getattr(A, name)(z32, **kw)
    np.testing.assert_array_equal(z.view(np.uint16), z32.astype(BF16).view(np.uint16))
    np.testing.assert_array_equal(y.view(np.uint16), y32.astype(BF16).view(np.uint16))
    y_only = mk.linear(x, w, b, activation=act, out=np.empty((70, 45), np.float32))
    np.testing.assert_array_equal(y_only, y32)
