"""Embedding beyond the spec rows: parity with torch (float64), a deterministic backward
for any thread count, the padding row, every integer index dtype, and bad indices that are
refused before anything is written."""
import numpy as np
import pytest

import mlkernels as mk
from mlkernels import _runtime
from mlkernels import reference as ref
from mlkernels._dispatch import K
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1, -7])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_matches_torch_float64(padding_idx, index_dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((9, 5))
    idx = rng.integers(0, 9, (4, 6)).astype(index_dtype)
    idx[0, :3] = 3                                           # repeats, and the padding row
    tw = torch.from_numpy(w.copy()).requires_grad_()
    ty = torch.nn.functional.embedding(torch.from_numpy(idx), tw, padding_idx=padding_idx)
    assert_close(mk.embedding(idx, w, padding_idx=padding_idx), ty.detach().numpy(), np.float64)
    g = rng.standard_normal(ty.shape)
    ty.backward(torch.from_numpy(g))
    assert_close(mk.embedding_backward(g, idx, 9, padding_idx=padding_idx), tw.grad.numpy(),
                 np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_the_same_bits_for_any_thread_count(dtype):
    rng = np.random.default_rng(1)
    V, d, n = 3000, 70, 20000
    idx = rng.integers(0, V, n)
    idx[::3] = 17                                            # one row summed ~6700 times
    g = rng.standard_normal((n, d)).astype(dtype)
    with mk.threads(1):
        want = mk.embedding_backward(g, idx, V, padding_idx=5)
    for threads in (2, 3, 4):
        with mk.threads(threads):
            np.testing.assert_array_equal(mk.embedding_backward(g, idx, V, padding_idx=5), want)
            out = np.full((V, d), np.nan, dtype)            # the written (not zeroed) path
            mk.embedding_backward(g, idx, V, padding_idx=5, out=out)
            np.testing.assert_array_equal(out, want)
    old = _runtime.set_stream_from(0)                    # streaming stores
    try:
        out = np.full((V, d), np.nan, dtype)
        np.testing.assert_array_equal(mk.embedding_backward(g, idx, V, padding_idx=5, out=out),
                                      want)
        np.testing.assert_array_equal(mk.embedding(idx, g.T.copy()[:, :V].T.copy()),
                                      g.T.copy()[:, :V].T[idx])
    finally:
        _runtime.set_stream_from(old)
    # and the sums are accurate: float32 accumulates in double
    exact = ref.embedding_backward(g, idx, V, 5)
    assert_close(want, exact, dtype)
    assert (want[5] == 0).all() and (want[np.setdiff1d(np.arange(V), idx)] == 0).all()


def test_every_integer_index_dtype_gives_the_same_answer():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((100, 4)).astype(np.float32)
    base = rng.integers(0, 100, (3, 7))
    g = rng.standard_normal((3, 7, 4)).astype(np.float32)
    want_f, want_b = mk.embedding(base, w), mk.embedding_backward(g, base, 100)
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
               ">i8", ">i4"):
        idx = base.astype(dt)
        np.testing.assert_array_equal(mk.embedding(idx, w), want_f, str(dt))
        np.testing.assert_array_equal(mk.embedding_backward(g, idx, 100), want_b, str(dt))
    strided = np.zeros((3, 14), np.int64)
    strided[:, ::2] = base
    np.testing.assert_array_equal(mk.embedding(strided[:, ::2], w), want_f)
    np.testing.assert_array_equal(mk.embedding_backward(g, strided[:, ::2], 100), want_b)
    for bad in (base.astype(bool), base.astype(np.float64), base.tolist()):
        with pytest.raises(TypeError, match="indices must be an array of integers"):
            mk.embedding(bad, w)
        with pytest.raises(TypeError, match="indices must be an array of integers"):
            mk.embedding_backward(g, bad, 100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_strides_and_empty(dtype):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 6)).astype(dtype)
    idx = rng.integers(0, 8, (5, 2))
    assert_close(mk.embedding(idx, w[:, ::2]), ref.embedding(idx, w[:, ::2]), dtype)
    assert_close(mk.embedding(idx, np.asfortranarray(w)), ref.embedding(idx, w), dtype)
    g = rng.standard_normal((5, 2, 12)).astype(dtype)[..., ::2]
    assert_close(mk.embedding_backward(g, idx, 8), ref.embedding_backward(g, idx, 8), dtype)
    assert mk.embedding(np.array(3), w).shape == (6,)
    assert mk.embedding(np.zeros((0, 3), np.int64), w).shape == (0, 3, 6)
    assert mk.embedding(idx, w[:, :0]).shape == (5, 2, 0)
    assert mk.embedding(np.zeros(0, np.int64), np.zeros((0, 4), dtype)).shape == (0, 4)
    out = np.full((8, 6), np.nan, dtype)
    assert mk.embedding_backward(np.zeros((0, 6), dtype), np.zeros(0, np.int64), 8,
                                 out=out) is out
    assert (out == 0).all()
    assert mk.embedding_backward(np.zeros((0, 6), dtype), np.zeros(0, np.int64), 0).shape == (0, 6)
    out = np.full((5, 2, 6), np.nan, dtype)
    assert mk.embedding(idx, w, out=out) is out and np.array_equal(out, w[idx])


def test_out_of_range_indices_are_named_and_nothing_is_written():
    w = np.ones((10, 3), np.float32)
    out = np.full((2, 3, 3), 7, np.float32)
    g = np.ones((2, 3, 3), np.float32)
    gout = np.full((10, 3), 7, np.float32)
    for value, position in ((10, (1, 2)), (-1, (0, 1)), (2**40, (1, 0))):
        idx = np.array([[0, 1, 2], [3, 4, 5]])
        idx[position] = value
        with pytest.raises(ValueError, match=rf"indices holds {value} at position "
                                             rf"\({position[0]}, {position[1]}\), outside "
                                             rf"\[0, num_embeddings=10\)"):
            mk.embedding(idx, w, out=out)
        with pytest.raises(ValueError, match=f"indices holds {value}"):
            mk.embedding_backward(g, idx, 10, out=gout)
    with pytest.raises(ValueError, match="indices holds 18446744073709551615"):
        mk.embedding(np.array([2**64 - 1], np.uint64), w)
    with pytest.raises(ValueError, match=r"indices holds 12 at position \(\)"):
        mk.embedding(np.array(12), w)
    assert (out == 7).all() and (gout == 7).all()


def test_bad_arguments_write_nothing():
    w = np.ones((10, 3), np.float32)
    idx = np.array([1, 2])
    g = np.ones((2, 3), np.float32)
    gout = np.full((10, 3), 7, np.float32)
    for pad, exc in ((10, ValueError), (-11, ValueError), (1.0, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="padding_idx"):
            mk.embedding(idx, w, padding_idx=pad)
        with pytest.raises(exc, match="padding_idx"):
            mk.embedding_backward(g, idx, 10, padding_idx=pad, out=gout)
    with pytest.raises(ValueError, match="grad_out has shape"):
        mk.embedding_backward(np.ones((3, 3), np.float32), idx, 10, out=gout)
    with pytest.raises(ValueError, match="grad_out has shape"):
        mk.embedding_backward(np.ones(2, np.float32), idx, 10, out=gout)
    with pytest.raises(ValueError, match="num_embeddings"):
        mk.embedding_backward(g, idx, -1)
    with pytest.raises(TypeError, match="num_embeddings"):
        mk.embedding_backward(g, idx, 10.0)
    with pytest.raises(ValueError, match="out has shape"):
        mk.embedding_backward(g, idx, 10, out=np.zeros((10, 4), np.float32))
    with pytest.raises(ValueError, match="weight has shape"):
        mk.embedding(idx, np.ones(10, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        mk.embedding(idx, np.ones((10, 3), np.int32))
    with pytest.raises(ValueError, match="overlaps"):
        mk.embedding(np.array([0]), w, out=w[:1])
    assert (gout == 7).all()
