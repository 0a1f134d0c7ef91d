"""embedding and embedding_backward on 16-bit storage (bfloat16 of ml_dtypes, numpy float16).

The forward copies rows: its result is the float32 forward's on the widened weight, rounded
(bit for bit; a copy keeps NaN payloads). The backward takes a 16-bit grad_out and gives the
float32 kernel's result on the widened grad_out: as float32 (the default), or rounded once
to the 16-bit dtype of ``out=`` -- bit for bit, NaN included, on every ISA variant, serial
and threaded, streamed and not, with and without a zero-filled out.
"""
import numpy as np
import pytest

import mlkernels as mk
from mlkernels import _runtime

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = [BF16, np.dtype(np.float16)]
IDS = ["bfloat16", "float16"]
SPECIALS = [np.nan, -np.inf, np.inf, -0.0, 1e30, 1e-30, 6e-8, 65504.0, 70000.0]

pytestmark = pytest.mark.usefixtures("isa")


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    flat = x.reshape(-1)
    if flat.size >= 4 * len(SPECIALS):
        flat[rng.choice(flat.size, len(SPECIALS), replace=False)] = SPECIALS
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def same_bits(got, expected_f32, dtype):
    assert got.dtype == dtype and got.shape == expected_f32.shape
    with np.errstate(all="ignore"):
        want = expected_f32.astype(dtype)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


# (indices shape, num_embeddings, dim): empty, 0-d indices, size 1, SIMD tails, repeats,
# threaded sizes (n·d >= 65536)
CASES = [((0,), 5, 3), ((), 7, 3), ((1,), 1, 1), ((9,), 4, 17), ((3, 11), 6, 33),
         ((40, 50), 300, 64), ((4000,), 50, 33)]


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_is_the_rows(dtype, case):
    shape, V, d = case
    w = data((V, d), dtype, 1)
    idx = np.random.default_rng(2).integers(0, V, shape)
    y = mk.embedding(idx, w)
    assert y.dtype == dtype and y.shape == shape + (d,)
    # the bits of the rows; and so the float32 forward on the widened weight, rounded
    np.testing.assert_array_equal(y.view(np.uint16), w.view(np.uint16)[idx])
    same_bits(y, mk.embedding(idx, w.astype(np.float32)), dtype)
    out = np.full(shape + (d,), np.nan, dtype)
    assert mk.embedding(idx, w, out=out) is out
    np.testing.assert_array_equal(out.view(np.uint16), y.view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("padding_idx", [None, 0])
def test_backward_is_float32_then_rounded(dtype, case, padding_idx):
    shape, V, d = case
    rng = np.random.default_rng(3)
    idx = rng.integers(0, V, shape)
    g = data(shape + (d,), dtype, 4)
    want = mk.embedding_backward(g.astype(np.float32), idx, V, padding_idx=padding_idx)
    got = mk.embedding_backward(g, idx, V, padding_idx=padding_idx)       # float32: default
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    for fill in (0.0, np.nan):                   # zero-filled out, and a written one
        out32 = np.full((V, d), fill, np.float32)
        assert mk.embedding_backward(g, idx, V, padding_idx=padding_idx, out=out32) is out32
        np.testing.assert_array_equal(out32, want)
        out16 = np.full((V, d), fill, dtype)
        assert mk.embedding_backward(g, idx, V, padding_idx=padding_idx, out=out16) is out16
        same_bits(out16, want, dtype)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_backward_threads_streaming_and_strides(dtype):
    """The same bits for any thread count, with streaming stores, and from strided grad_out
    (NaN planted in the gaps)."""
    rng = np.random.default_rng(5)
    V, d, n = 3000, 70, 20000
    idx = rng.integers(0, V, n)
    idx[::3] = 17                                  # one row summed ~6700 times
    g = data((n, d), dtype, 6)
    with mk.threads(1):
        want32 = mk.embedding_backward(g, idx, V, padding_idx=5)
        want16 = mk.embedding_backward(g, idx, V, padding_idx=5, out=np.zeros((V, d), dtype))
    np.testing.assert_array_equal(want32, mk.embedding_backward(g.astype(np.float32), idx, V,
                                                                padding_idx=5))
    same_bits(want16, want32, dtype)
    wide = np.full((n, 2 * d), np.nan, dtype)
    wide[:, ::2] = g
    old = _runtime.set_stream_from(0)
    try:
        for threads in (1, 2, 3):
            with mk.threads(threads):
                for grad in (g, wide[:, ::2]):
                    np.testing.assert_array_equal(mk.embedding_backward(grad, idx, V,
                                                                        padding_idx=5), want32)
                    out = np.full((V, d), np.nan, dtype)
                    mk.embedding_backward(grad, idx, V, padding_idx=5, out=out)
                    np.testing.assert_array_equal(out.view(np.uint16), want16.view(np.uint16))
                    y = mk.embedding(idx, out)
                    np.testing.assert_array_equal(y.view(np.uint16),
                                                  out.view(np.uint16)[idx])
    finally:
        _runtime.set_stream_from(old)


def test_16bit_accumulation_would_lose_the_sum():
    """Why the sums are never kept in 16 bits: a row named 1000 times with a gradient of
    0.01 sums to 10.01 (bfloat16's 0.01 is 0.010009765625). A bfloat16 accumulator, rounded
    at every add, stalls at 4.0 (from 4 on, 0.01 is below half its unit, 2^-5); a float16
    one ends at 9.953. The kernel sums in float32's way (in double) and rounds once."""
    n = 1000
    idx = np.zeros(n, np.int64)
    for dtype, naive_result in ((BF16, 4.0), (np.dtype(np.float16), 9.953125)):
        g = np.full((n, 1), 0.01, dtype)
        naive = dtype.type(0)
        for v in g[:, 0]:
            naive = dtype.type(naive + v)          # a 16-bit accumulator: rounded every add
        assert float(naive) == naive_result
        exact = n * float(g[0, 0])                 # the sum of the 16-bit values, exactly
        got32 = mk.embedding_backward(g, idx, 1)
        assert got32[0, 0] == np.float32(exact)
        got16 = mk.embedding_backward(g, idx, 1, out=np.zeros((1, 1), dtype))
        assert got16[0, 0] == np.float32(exact).astype(dtype)
        # rounded once: within half a unit of the sum; the 16-bit accumulator 10x further off
        assert abs(float(naive) - exact) > 10 * abs(float(got16[0, 0]) - exact)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_bad_input_writes_nothing(dtype):
    w = data((6, 4), dtype, 0)
    idx = np.array([1, 2, 5])
    g = data((3, 4), dtype, 1)
    with pytest.raises(ValueError, match="out has dtype float64; expected float32 "):
        mk.embedding_backward(g, idx, 6, out=np.zeros((6, 4), np.float64))
    with pytest.raises(TypeError, match=r"embedding_backward\(\): grad_out has dtype int16"):
        mk.embedding_backward(g.view(np.int16), idx, 6)
    out = np.full((6, 4), 7, dtype)
    with pytest.raises(ValueError, match=r"out has shape \(5, 4\)"):
        mk.embedding_backward(g, idx, 6, out=np.zeros((5, 4), dtype))
    with pytest.raises(ValueError, match="indices holds 6"):
        mk.embedding_backward(g, np.array([1, 2, 6]), 6, out=out)
    assert (out.astype(np.float32) == 7).all()
    with pytest.raises(ValueError, match="out has dtype float32"):
        mk.embedding(idx, w, out=np.zeros((3, 4), np.float32))
    other = BF16 if dtype != BF16 else np.dtype(np.float16)
    with pytest.raises(ValueError, match=f"out has dtype {other}"):
        mk.embedding_backward(g, idx, 6, out=np.zeros((6, 4), other))
    y = np.full((3, 4), 7, dtype)
    with pytest.raises(ValueError, match="indices holds -1"):
        mk.embedding(np.array([0, -1, 2]), w, out=y)
    assert (y.astype(np.float32) == 7).all()
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros((6, 4), dtype)
        ro.flags.writeable = False
        mk.embedding_backward(g, idx, 6, out=ro)
