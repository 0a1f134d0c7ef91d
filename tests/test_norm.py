"""Normalization beyond the spec rows: statistics semantics, numerics far from 0, strides,
hypothesis shapes, torch's semantics when installed, and bad input that touches nothing."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

# 50x the examples under `pytest --hypothesis-profile=long` (registered in tests/conftest.py)
LONG = 50 if settings.default.max_examples >= 5000 else 1

import mlkernels as mk
from mlkernels import reference as ref
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")


def test_large_mean_small_spread_float32():
    """1e4 + N(0, 1e-2) in float32: no cancellation, the float64 reference's answer."""
    rng = np.random.default_rng(0)
    x = (1e4 + rng.standard_normal((64, 256)) * 1e-2).astype(np.float32)
    y, mean, rstd = mk.layer_norm(x, 256)
    assert_close(y, ref.layer_norm(x, 256)[0], np.float32, rtol=1e-5, atol=1e-4)
    # (rtol 1e-5 here: x itself is rounded to float32 at 1e4, ulp 1e-3 = 0.1 std; the
    # reference sees the same rounded values, the remaining error is float32 arithmetic)
    y, m, r = mk.batch_norm(x, None, None, training=True)
    assert_close(y, ref.batch_norm(x, None, None, training=True)[0], np.float32, rtol=1e-5,
                 atol=1e-4)
    # the backward forms x − mean with the mean as a float pair (and its low half folded into
    # a constant): taking the mean as one float would be off by up to 5e-4 = 5% of the spread
    g = rng.standard_normal(x.shape).astype(np.float32)
    gx = mk.batch_norm_backward(g, x, m, r)[0]
    want = ref.batch_norm_backward(*(a.astype(np.float64) for a in (g, x, m, r)))[0]
    assert_close(gx, want, np.float32, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    y, m, r = mk.group_norm(x.reshape(64, 8, 32), 4)
    assert_close(y, ref.group_norm(x.reshape(64, 8, 32), 4)[0], np.float32, rtol=1e-5,
                 atol=1e-4)


def test_running_stats_momentum_unbiased_and_cumulative():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 3, 4))
    rm, rv = np.zeros(3), np.ones(3)
    mk.batch_norm(x, rm, rv, training=True, momentum=0.1)
    xc = np.moveaxis(x, 1, 0).reshape(3, -1)
    assert_close(rm, 0.1 * xc.mean(1), np.float64)
    assert_close(rv, 0.9 + 0.1 * xc.var(1, ddof=1), np.float64)        # unbiased
    rm, rv = np.zeros(3), np.ones(3)
    for t in (1, 2):
        mk.batch_norm(x * t, rm, rv, training=True, momentum=None, num_batches_tracked=t)
    assert_close(rm, (xc.mean(1) + 2 * xc.mean(1)) / 2, np.float64)    # cumulative average
    frozen = rm.copy(), rv.copy()
    y, m, r = mk.batch_norm(x, rm, rv, training=False)
    assert np.array_equal(rm, frozen[0]) and np.array_equal(rv, frozen[1])
    assert_close(m, rm, np.float64)
    assert_close(y, ref.batch_norm(x, rm, rv)[0], np.float64)


def test_matches_torch_when_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (it is only a comparison peer)")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4, 5))
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    rm, rv = np.zeros(4), np.ones(4)
    trm, trv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    y = mk.batch_norm(x, rm, rv, w, b, training=True)[0]
    ty = torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv, torch.from_numpy(w),
                                        torch.from_numpy(b), training=True)
    assert_close(y, ty.numpy(), np.float64)
    assert_close(rm, trm.numpy(), np.float64)
    assert_close(rv, trv.numpy(), np.float64)
    ln = mk.layer_norm(x, (4, 5))[0]
    assert_close(ln, torch.nn.functional.layer_norm(torch.from_numpy(x), (4, 5)).numpy(),
                 np.float64)
    gn = mk.group_norm(x, 2, w, b)[0]
    tg = torch.nn.functional.group_norm(torch.from_numpy(x), 2, torch.from_numpy(w),
                                        torch.from_numpy(b))
    assert_close(gn, tg.numpy(), np.float64)
    rms = mk.rms_norm(x.astype(np.float32), 5)[0]
    trms = torch.nn.functional.rms_norm(torch.from_numpy(x.astype(np.float32)), (5,))
    assert_close(rms, trms.numpy(), np.float32)


def test_strided_inputs():
    rng = np.random.default_rng(3)
    base = np.full((8, 12), np.nan)
    base[:, ::2] = rng.standard_normal((8, 6))
    x = base[:, ::2]
    assert_close(mk.layer_norm(x, 6)[0], ref.layer_norm(np.ascontiguousarray(x), 6)[0],
                 np.float64)
    xt = np.ascontiguousarray(rng.standard_normal((5, 8)).T)   # a transposed view's copy
    assert_close(mk.batch_norm(xt.T.T, None, None, training=True)[0],
                 ref.batch_norm(xt, None, None, training=True)[0], np.float64)


@settings(max_examples=40 * LONG, deadline=None)
@given(N=st.integers(2, 5), C=st.integers(1, 6), spatial=st.lists(st.integers(1, 4), max_size=2),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_hypothesis_shapes(N, C, spatial, dtype):
    rng = np.random.default_rng(N * 100 + C)
    x = rng.standard_normal((N, C, *spatial)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    y, m, r = mk.batch_norm(x, None, None, training=True)
    assert_close(y, ref.batch_norm(x, None, None, training=True)[0], dtype, rtol=1e-5,
                 atol=1e-5)
    gx = mk.batch_norm_backward(g, x, m, r)[0]
    want = ref.batch_norm_backward(g, x, m, r)[0]
    assert_close(gx, want, dtype, rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-10)
    groups = C if C % 2 else max(1, C // 2)
    y, m, r = mk.group_norm(x, groups)
    assert_close(y, ref.group_norm(x, groups)[0], dtype, rtol=1e-5, atol=1e-5)
    # (rtol/atol 1e-4/1e-5: rows of a few elements have rstd up to 1/√eps, which amplifies
    #  float32 rounding; the spec rows check the tight, scaled tolerance)


# Shapes that take each of the kernels' paths: BatchNorm statistics a channel at a time (few
# samples), sample by sample (S > 1), through 16-row block sums (one value per channel, C >= 16,
# a partial last block); the same with two threads (>= 65536 elements); LayerNorm's dγ/dβ block
# sums; GroupNorm's per-channel backward sums (S > 1) and its per-element ones (S = 1).
PATH_SHAPES = [(1, 4, 9), (3, 8, 4000), (6, 5, 7), (40, 8, 300), (37, 20), (4100, 20), (3, 20)]


@pytest.mark.parametrize("shape", PATH_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_kernel_paths(shape, dtype):
    rng = np.random.default_rng(len(shape) * 1000 + shape[0])
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    C = shape[1]
    w = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    got = mk.batch_norm(x, None, None, w, b, training=True)
    want = ref.batch_norm(x, None, None, w, b, training=True)
    for a, e in zip(got, want):
        assert_close(a, e, dtype, rtol=1e-5, atol=1e-5)
    got = mk.batch_norm_backward(g, x, got[1], got[2], w)
    want = ref.batch_norm_backward(g, x, *mk.batch_norm(x, None, None, w, b, training=True)[1:], w)
    for a, e in zip(got, want):
        assert_close(a, e, dtype, rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("shape", PATH_SHAPES + [(5, 3, 67), (9, 37)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [True, False])
def test_batch_norm_streamed_outputs(shape, dtype, aligned, stream_everything, off_line):
    """The streamed y and dx equal the references, for outputs aligned or not to a line, rows
    of a length that is not a multiple of a tile or a vector, both modes."""
    rng = np.random.default_rng(shape[0] + 7 * shape[-1])
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    C = shape[1]
    w = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    for training in (True, False):
        y = np.empty_like(x) if aligned else off_line(x.shape, dtype)
        got = mk.batch_norm(x, rm.copy(), rv.copy(), w, b, training,
                            out=(y, np.empty(C, dtype), np.empty(C, dtype)))
        want = ref.batch_norm(x, rm.copy(), rv.copy(), w, b, training)
        assert got[0] is y
        for a, e in zip(got, want):
            assert_close(a, e, dtype, rtol=1e-5, atol=1e-5)
        gx = np.empty_like(x) if aligned else off_line(x.shape, dtype)
        got = mk.batch_norm_backward(g, x, got[1], got[2], w, training,
                                     out=(gx, np.empty(C, dtype), None))
        want = ref.batch_norm_backward(g, x, want[1], want[2], w, training)
        assert got[0] is gx
        for a, e in zip(got, want):
            assert_close(a, e, dtype, rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("shape", [(37, 64), (5, 3, 67), (4100, 20), (3, 4, 5000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned", [True, False])
def test_row_norms_streamed_outputs(shape, dtype, aligned, stream_everything, off_line):
    """LayerNorm, RMSNorm and GroupNorm through their row buffers and streaming stores (rows up
    to 64 KiB; the (3, 4, 5000) float64 GroupNorm rows are longer and go straight to out),
    with y and dx aligned to a line or not."""
    rng = np.random.default_rng(shape[0] + shape[-1])
    x = (2 + rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    last = shape[-1]
    w = rng.standard_normal(last).astype(dtype)
    b = rng.standard_normal(last).astype(dtype)
    new = (lambda: np.empty_like(x)) if aligned else (lambda: off_line(x.shape, dtype))
    tol = dict(rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-10)

    y = new()
    got = mk.layer_norm(x, last, w, b, out=(y, None, None))
    assert got[0] is y
    assert_close(y, ref.layer_norm(x, last, w, b)[0], dtype, **tol)
    mean, rstd = got[1], got[2]
    want = ref.layer_norm_backward(g, x, last, mean, rstd, w)
    gx = new()
    got = mk.layer_norm_backward(g, x, last, mean, rstd, w, has_bias=True,
                                 out=(gx, None, None))
    assert got[0] is gx
    for a, e in zip(got, want):
        assert_close(a, e, dtype, **tol)

    y = new()
    y, rstd = mk.rms_norm(x, last, w, out=(y, None))
    assert_close(y, ref.rms_norm(x, last, w)[0], dtype, **tol)
    gx = new()
    got = mk.rms_norm_backward(g, x, last, rstd, w, out=(gx, None))
    for a, e in zip(got, ref.rms_norm_backward(g, x, last, rstd, w)):
        assert_close(a, e, dtype, **tol)

    C = shape[1]
    groups = next(k for k in (3, 2, 1) if C % k == 0)
    wc, bc = w[:C].copy(), b[:C].copy()
    y = new()
    got = mk.group_norm(x, groups, wc, bc, out=(y, None, None))
    assert_close(y, ref.group_norm(x, groups, wc, bc)[0], dtype, **tol)
    gx = new()
    got = mk.group_norm_backward(g, x, groups, got[1], got[2], wc, has_bias=True,
                                 out=(gx, None, None))
    want = ref.group_norm_backward(g, x, groups, *mk.group_norm(x, groups, wc, bc)[1:], wc)
    for a, e in zip(got, want):
        assert_close(a, e, dtype, **tol)


@pytest.mark.parametrize("rows, cols", [(37, 64), (70, 1000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_backward_block_sums(rows, cols, dtype):
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, cols)).astype(dtype)
    g = rng.standard_normal((rows, cols)).astype(dtype)
    w = rng.standard_normal(cols).astype(dtype)
    b = rng.standard_normal(cols).astype(dtype)
    _, mean, rstd = mk.layer_norm(x, cols, w, b)
    got = mk.layer_norm_backward(g, x, cols, mean, rstd, w)
    want = ref.layer_norm_backward(g, x, cols, mean, rstd, w)
    for a, e in zip(got, want):
        assert_close(a, e, dtype, rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("shape, groups", [((3, 6, 5), 3), ((4, 6), 2), ((2, 4, 3, 3), 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_backward_sums(shape, groups, dtype):
    rng = np.random.default_rng(shape[0] * 10 + groups)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(shape[1]).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    _, mean, rstd = mk.group_norm(x, groups, w, b)
    got = mk.group_norm_backward(g, x, groups, mean, rstd, w)
    want = ref.group_norm_backward(g, x, groups, mean, rstd, w)
    for a, e in zip(got, want):
        assert_close(a, e, dtype, rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-10)


# ---------------------------------------------------------------------------- bad input

def _same(arrays, saved):
    return all(np.array_equal(a, s) for a, s in zip(arrays, saved))


def test_batch_norm_bad_input_changes_nothing():
    x = np.ones((4, 3), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    saved = [rm.copy(), rv.copy()]
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    cases = [
        (dict(x=x.astype(np.int32)), TypeError, "dtype"),
        (dict(running_mean=rm.astype(np.float64)), TypeError, "dtype"),
        (dict(running_mean=np.zeros(4, np.float32)), ValueError, "running_mean"),
        (dict(weight=np.ones(2, np.float32)), ValueError, "weight"),
        (dict(eps=-1e-5), ValueError, "eps"),
        (dict(momentum=1.5), ValueError, "momentum"),
        (dict(momentum=None), ValueError, "num_batches_tracked"),
        (dict(running_mean=ro), ValueError, "running_mean"),
        (dict(x=np.ones((1, 3), np.float32)), ValueError, "more than 1 value"),
        (dict(x=np.ones(3, np.float32)), ValueError, "(N, C)"),
        (dict(out=np.zeros((4, 3), np.float64)), ValueError, "dtype"),
    ]
    for change, exc, match in cases:
        kwargs = dict(x=x, running_mean=rm, running_var=rv, training=True)
        kwargs.update(change)
        with pytest.raises(exc, match=match):
            mk.batch_norm(**kwargs)
        assert _same([rm, rv], saved), change
    with pytest.raises(ValueError, match="eval mode"):
        mk.batch_norm(x, None, None, training=False)


def test_layer_group_rms_bad_input():
    x = np.ones((2, 4, 3), np.float32)
    out = np.full((2, 4, 3), 7, np.float32)
    with pytest.raises(ValueError, match="normalized_shape"):
        mk.layer_norm(x, (4,), out=out)
    with pytest.raises(ValueError, match="weight"):
        mk.layer_norm(x, 3, np.ones(4, np.float32), out=out)
    with pytest.raises(ValueError, match="eps"):
        mk.layer_norm(x, 3, eps=-1.0, out=out)
    with pytest.raises(TypeError, match="dtype"):
        mk.layer_norm(x, 3, np.ones(3, np.float64), out=out)
    with pytest.raises(ValueError, match="num_groups"):
        mk.group_norm(x, 3, out=out)
    with pytest.raises(ValueError, match="num_groups"):
        mk.group_norm(x, 0, out=out)
    with pytest.raises(ValueError, match="normalized_shape"):
        mk.rms_norm(x, (2, 3), out=out)
    assert (out == 7).all()
    _, mean, rstd = mk.layer_norm(x, 3)
    with pytest.raises(ValueError, match="mean"):
        mk.layer_norm_backward(x, x, 3, mean[:1], rstd)
    with pytest.raises(ValueError, match="grad_out"):
        mk.layer_norm_backward(x[:1], x, 3, mean, rstd)


def test_grads_none_without_weight_and_bias():
    x = np.random.default_rng(0).standard_normal((3, 4))
    _, m, r = mk.layer_norm(x, 4)
    gx, gw, gb = mk.layer_norm_backward(np.ones_like(x), x, 4, m, r)
    assert gw is None and gb is None
    _, m, r = mk.batch_norm(x, None, None, training=True)
    assert mk.batch_norm_backward(np.ones_like(x), x, m, r)[1:] == (None, None)


def test_empty_rows_have_mean_0_and_rstd_nan_as_torch():
    """Found by the long fuzz run: a group of zero elements. torch reports mean 0, rstd NaN."""
    for y, *stats in (mk.group_norm(np.zeros((2, 4, 1, 0), np.float32), 2),
                      mk.layer_norm(np.zeros((3, 0), np.float64), (0,))):
        assert y.size == 0
        assert np.all(stats[0] == 0) and np.all(np.isnan(stats[1]))
    assert np.all(np.isnan(mk.rms_norm(np.zeros((3, 0), np.float32), (0,))[1]))


def test_misaligned_statistics_give_the_aligned_answer():
    """Found by the sanitized suite (UBSan: a misaligned double load): float64 mean/rstd
    viewed from a byte buffer at an odd offset are copied aligned before the kernel."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8))
    g = rng.standard_normal((6, 8))
    _, mean, rstd = mk.layer_norm(x, 8)

    def misaligned(a):
        m = np.zeros(a.nbytes + 1, np.uint8)[1:].view(np.float64).reshape(a.shape)
        m[...] = a
        assert not m.flags.aligned
        return m
    want = mk.layer_norm_backward(g, x, 8, mean, rstd)
    got = mk.layer_norm_backward(g, x, 8, misaligned(mean), misaligned(rstd))
    for a, e in zip(got, want):
        np.testing.assert_array_equal(a, e)


# ---------------------------------------------------------------------------- statistics
# The forwards write their statistics in the arrays' own type and the backwards read them in
# that type, straight from the caller's arrays (no float64 copies): every layout must give the
# answer of plain arrays, float32 and float64 alike.

def _backward_calls(dtype, rng):
    """(name, call(stats...) -> results, stats as the forward returned them) for each backward."""
    x = (3 + rng.standard_normal((12, 10))).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w = rng.standard_normal(10).astype(dtype)
    x4 = x.reshape(3, 4, 10)
    g4 = g.reshape(x4.shape)
    _, m, r = mk.layer_norm(x, 10, w)
    _, rr = mk.rms_norm(x, 10, w)
    _, gm, gr = mk.group_norm(x4, 2, w[:4])
    _, gm1, gr1 = mk.group_norm(x, 5, w)                # (N, C): one value per channel
    _, bm, br = mk.batch_norm(x, None, None, w, training=True)
    _, bm4, br4 = mk.batch_norm(x4, None, None, w[:4], training=True)
    return [
        ("layer_norm_backward", lambda m, r: mk.layer_norm_backward(g, x, 10, m, r, w), (m, r)),
        ("rms_norm_backward", lambda r: mk.rms_norm_backward(g, x, 10, r, w), (rr,)),
        ("group_norm_backward", lambda m, r: mk.group_norm_backward(g4, x4, 2, m, r, w[:4]),
         (gm, gr)),
        ("group_norm_backward S=1", lambda m, r: mk.group_norm_backward(g, x, 5, m, r, w),
         (gm1, gr1)),
        ("batch_norm_backward", lambda m, r: mk.batch_norm_backward(g, x, m, r, w), (bm, br)),
        ("batch_norm_backward S>1",
         lambda m, r: mk.batch_norm_backward(g4, x4, m, r, w[:4]), (bm4, br4)),
        ("batch_norm_backward eval",
         lambda m, r: mk.batch_norm_backward(g, x, m, r, w, training=False), (bm, br)),
    ]


def _misaligned(a):
    m = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


def _strided(a):
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def _byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


@pytest.mark.parametrize("layout", [_misaligned, _strided, _byteswapped])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_statistics_in_any_layout(dtype, layout):
    """float32 and float64 statistics, misaligned (UBSan once caught misaligned loads of
    them), strided or byte-swapped: the same bits as with the arrays the forward returned,
    and the float64 reference's answer on those statistics."""
    rng = np.random.default_rng(5)
    for name, call, stats in _backward_calls(np.dtype(dtype), rng):
        assert all(s.dtype == dtype for s in stats), name
        want = call(*stats)
        got = call(*(layout(s) for s in stats))
        for a, e in zip(got, want):
            np.testing.assert_array_equal(a, e, err_msg=name)


def test_forward_statistics_have_the_arrays_type():
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((6, 4, 5)).astype(dtype)
        results = [mk.layer_norm(x, 5), mk.rms_norm(x, 5), mk.group_norm(x, 2),
                   mk.batch_norm(x, None, None, training=True),
                   mk.batch_norm(x, np.zeros(4, dtype), np.ones(4, dtype))]
        for result in results:
            assert all(a.dtype == dtype for a in result)
        # the statistics are the float64 reference's, to the precision of the array's type
        # (summed in another order: equal bits are not to be expected)
        _, m, r = mk.layer_norm(x, 5)
        _, rm, rr = ref.layer_norm(x, 5)
        assert_close(m, rm, dtype)
        assert_close(r, rr, dtype)


# ---------------------------------------------------------------------------- threads

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(dtype):
    """Every norm, forward and backward, on sizes that run on several threads (sums across
    rows cut into several parts): the same bits on 1, 2 and 3 threads."""
    rng = np.random.default_rng(7)

    def run():
        out = []
        for shape in [(4096, 64), (300, 300), (4100, 20), (40, 8, 300), (3, 8, 4000),
                      (8, 16, 32, 32)]:
            x = (1 + rng_x.standard_normal(shape)).astype(dtype)
            g = rng_x.standard_normal(shape).astype(dtype)
            C, last = shape[1], shape[-1]
            w = np.linspace(0.5, 1.5, last).astype(dtype)
            wc = np.linspace(0.5, 1.5, C).astype(dtype)
            y, m, r = mk.layer_norm(x, last, w, w)
            out += [y, m, r, *mk.layer_norm_backward(g, x, last, m, r, w)]
            y, r = mk.rms_norm(x, last, w)
            out += [y, r, *mk.rms_norm_backward(g, x, last, r, w)]
            G = 4 if C % 4 == 0 else 1
            y, m, r = mk.group_norm(x, G, wc, wc)
            out += [y, m, r, *mk.group_norm_backward(g, x, G, m, r, wc)]
            rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
            y, m, r = mk.batch_norm(x, rm, rv, wc, wc, training=True)
            out += [y, m, r, rm, rv, *mk.batch_norm_backward(g, x, m, r, wc)]
        return out

    results = []
    for n in (1, 2, 3):
        rng_x = np.random.default_rng(7)
        with mk.threads(n):
            results.append(run())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- out=

def test_out_tuples_are_checked_before_anything_is_written():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w = np.ones(8, np.float32)
    _, mean, rstd = mk.layer_norm(x, 8, w)
    y, m, r = np.full_like(x, 7), np.full(6, 7, np.float32), np.full(6, 7, np.float32)
    gw = np.full(8, 7, np.float32)
    ro = np.full(6, 7, np.float32)
    ro.flags.writeable = False
    bad = [
        ((y, m), TypeError, r"out must be an array or a tuple \(y, mean, rstd\)"),
        ([y, m, r, None], TypeError, "out must be an array or a tuple"),
        ("y", TypeError, "got str"),
        ((y, m, [0.0] * 6), TypeError, r"out \(rstd\) must be a numpy.ndarray"),
        ((y, m, r.astype(np.float64)), ValueError, r"out \(rstd\) has dtype float64"),
        ((y, m, np.full(5, 7, np.float32)), ValueError, r"out \(rstd\) has shape \(5,\)"),
        ((y, m, ro), ValueError, r"out \(rstd\) is read-only"),
        ((y, m, np.full(12, 7, np.float32)[::2]), ValueError, r"out \(rstd\) is not C-contig"),
        ((y, m, m), ValueError, r"out \(rstd\) overlaps an input array"),
        ((x, m, r), ValueError, r"out \(y\) overlaps an input array"),
        ((y, w[:6], r), ValueError, r"out \(mean\) overlaps an input array"),
    ]
    for out, exc, match in bad:
        with pytest.raises(exc, match=match):
            mk.layer_norm(x, 8, w, out=out)
        assert (y == 7).all() and (m == 7).all() and (r == 7).all() and (ro == 7).all(), out
    with pytest.raises(ValueError, match=r"out for grad_bias is given, but there is no grad_bias"):
        mk.layer_norm_backward(g, x, 8, mean, rstd, w, has_bias=False, out=(y, gw, r[:0]))
    with pytest.raises(ValueError, match=r"out for grad_weight is given, but there is no"):
        mk.layer_norm_backward(g, x, 8, mean, rstd, None, out=(y, gw, None))
    with pytest.raises(ValueError, match=r"out \(grad_x\) overlaps an input array"):
        mk.layer_norm_backward(g, x, 8, mean, rstd, w, out=(g, gw, None))
    assert (y == 7).all() and (gw == 7).all()
    # a single array is the first result; None entries are allocated
    got = mk.layer_norm(x, 8, w, out=y)
    assert got[0] is y and got[1].shape == (6,)
    got = mk.layer_norm(x, 8, w, out=[None, m, None])
    assert got[1] is m


def _allocations_of(call):
    """Peak bytes traced while `call` runs, above what was traced before it (after a warm-up)."""
    import tracemalloc
    call()
    tracemalloc.start()
    try:
        call()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_forward_and_backward_with_out_allocate_no_arrays():
    """With every out= given, a LayerNorm or BatchNorm forward + backward allocates no array:
    the statistics go straight into their outputs in the arrays' type, the per-channel math
    runs in the kernel. The smallest array here is 1 KiB; what is traced is a few small
    Python objects (result tuples, shape slices)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((256, 256)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w, b = np.ones(256, np.float32), np.zeros(256, np.float32)
    y, gx = np.empty_like(x), np.empty_like(x)
    m, r, gw, gb = (np.empty(256, np.float32) for _ in range(4))
    rm, rv = np.zeros(256, np.float32), np.ones(256, np.float32)

    def ln():
        mk.layer_norm(x, 256, w, b, out=(y, m, r))
        mk.layer_norm_backward(g, x, 256, m, r, w, out=(gx, gw, gb))

    def bn():
        mk.batch_norm(x, rm, rv, w, b, training=True, out=(y, m, r))
        mk.batch_norm_backward(g, x, m, r, w, out=(gx, gw, gb))
    for call in (ln, bn):
        assert _allocations_of(call) < 1000, call.__name__


def test_docstring_examples_run():
    """The Examples of every public function of mlkernels.norm (run with doctest here: pytest's
    own doctest collector is not configured for the package)."""
    import doctest
    import mlkernels.norm as norm
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for name in norm.__all__:
        for example in finder.find(getattr(norm, name), name, globs={}):
            runner.run(example)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 8 * 3 and result.failed == 0
