"""Fused linear + cross-entropy beyond the spec rows: parity with torch (float64), equality
with the unfused composition, chunking, the memory it never takes, edge cases, bad input."""
import tracemalloc

import numpy as np
import pytest

import mlkernels as mk
from mlkernels import loss as L
from mlkernels import reference as ref
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]


def _problem(dtype=np.float64, N=40, d=12, V=30, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, d)).astype(dtype)
    w = (rng.standard_normal((V, d)) * 0.4).astype(dtype)
    b = rng.standard_normal(V).astype(dtype) if bias else None
    t = rng.integers(0, V, N)
    t[::7] = -100
    return x, w, t, b


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_float64(reduction, label_smoothing, bias):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    x, w, t, b = _problem(bias=bias)
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    tx, tw = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w))
    tb = torch.from_numpy(b.copy()).requires_grad_() if bias else None
    tl = torch.nn.functional.cross_entropy(torch.nn.functional.linear(tx, tw, tb),
                                           torch.from_numpy(t), **kw)
    ours = mk.linear_cross_entropy(x, w, t, b, chunk_rows=9, **kw)
    assert_close(np.asarray(ours), tl.detach().numpy(), np.float64)
    g = np.random.default_rng(1).standard_normal(tl.shape)
    tl.backward(torch.from_numpy(g))
    gx, gw, gb = mk.linear_cross_entropy_backward(g if reduction == "none" else float(g), x, w,
                                                  t, b, chunk_rows=9, **kw)
    assert_close(gx, tx.grad.numpy(), np.float64)
    assert_close(gw, tw.grad.numpy(), np.float64)
    if bias:
        assert_close(gb, tb.grad.numpy(), np.float64)
    else:
        assert gb is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_equals_linear_then_cross_entropy_for_any_chunk(dtype):
    x, w, t, b = _problem(dtype, N=67, d=20, V=45)
    want = mk.cross_entropy(mk.linear(x, w, b), t, reduction="none")
    dz = mk.cross_entropy_backward(np.asarray(2.0, dtype), mk.linear(x, w, b), t)
    want_g = mk.linear_backward(dz, x, w)
    for chunk in (1, 2, 16, 66, 67, 1000, None):
        got = mk.linear_cross_entropy(x, w, t, b, reduction="none", chunk_rows=chunk)
        assert_close(got, want, dtype, atol=1e-5 if dtype == np.float32 else None)
        gx, gw, gb = mk.linear_cross_entropy_backward(2.0, x, w, t, b, chunk_rows=chunk)
        for a, e in zip((gx, gw, gb), want_g):
            assert_close(a, e, dtype, atol=1e-5 if dtype == np.float32 else None)



def test_the_thread_count_changes_nothing():
    """On 1, 2 or 3 threads the bits are the same: each row of the pass is one thread's (the
    bias gradient's columns too), and each element of a product is one thread's block."""
    x, w, t, b = _problem(np.float32, N=300, d=20, V=4000)
    with mk.threads(1):
        one = mk.linear_cross_entropy_with_grad(x, w, t, b, chunk_rows=128)
    for threads in (2, 3):
        with mk.threads(threads):
            many = mk.linear_cross_entropy_with_grad(x, w, t, b, chunk_rows=128)
        for a, c in zip(one, many):
            np.testing.assert_array_equal(a, c)


def test_never_holds_the_logits():
    """tracemalloc: the forward and the backward allocate one chunk of logits (plus O(N + V)),
    not the (N, V) matrix that linear + cross_entropy does."""
    x, w, t, b = _problem(np.float32, N=1024, d=8, V=4096)
    logits_bytes = 1024 * 4096 * 4                                   # 16 MiB
    chunk = 128
    for fn in (lambda: mk.linear_cross_entropy(x, w, t, b, chunk_rows=chunk),
               lambda: mk.linear_cross_entropy_backward(1.0, x, w, t, b, chunk_rows=chunk)):
        fn()
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        outputs = w.nbytes + x.nbytes + b.nbytes                     # the backward's results
        assert peak < chunk * 4096 * 4 + outputs + 1024 * 16 + 4096 * 8 + 2**16, peak
        assert peak < logits_bytes / 4
    tracemalloc.start()
    mk.cross_entropy(mk.linear(x, w, b), t)
    assert tracemalloc.get_traced_memory()[1] >= logits_bytes
    tracemalloc.stop()


@pytest.mark.parametrize("dtype", DTYPES)
def test_leading_dimensions_and_one_row(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5)).astype(dtype)
    w = rng.standard_normal((7, 5)).astype(dtype)
    t = rng.integers(0, 7, (2, 3))
    got = mk.linear_cross_entropy(x, w, t, reduction="none")
    assert got.shape == (2, 3)
    assert_close(got, mk.cross_entropy(mk.linear(x, w).reshape(6, 7), t.reshape(6),
                                       reduction="none").reshape(2, 3), dtype, atol=1e-6)
    gx, gw, gb = mk.linear_cross_entropy_backward(np.ones((2, 3), dtype), x, w, t,
                                                  reduction="none")
    assert gx.shape == x.shape and gw.shape == w.shape and gb is None
    one = mk.linear_cross_entropy(x[0, 0], w, np.array(t[0, 0]), reduction="none")
    assert one.shape == ()
    assert_close(one, got[0, 0], dtype, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_cases(dtype):
    x, w, t, b = _problem(dtype, N=6, d=4, V=5)
    # every target ignored: the mean is NaN (as cross_entropy), the gradients are 0
    ign = np.full(6, -100)
    assert np.isnan(mk.linear_cross_entropy(x, w, ign, b))
    for g in mk.linear_cross_entropy_backward(1.0, x, w, ign, b):
        assert (g == 0).all()
    # no rows
    assert np.isnan(mk.linear_cross_entropy(x[:0], w, t[:0], b))
    gx, gw, gb = mk.linear_cross_entropy_backward(1.0, x[:0], w, t[:0], b,
                                                  out=(None, np.full_like(w, np.nan), None))
    assert gx.shape == (0, 4) and (gw == 0).all() and (gb == 0).all()
    # no features: the logits are the bias
    assert_close(mk.linear_cross_entropy(x[:, :0], w[:, :0], t, b, reduction="none"),
                 mk.cross_entropy(np.broadcast_to(b, (6, 5)).copy(), t, reduction="none"), dtype)
    # no classes: only ignored targets are possible
    assert mk.linear_cross_entropy(x, w[:0], ign, b[:0], reduction="sum") == 0
    # huge logits stay finite
    big = mk.linear_cross_entropy(x, w * dtype(1e3), t, b, reduction="none")
    assert np.isfinite(big).all()
    assert np.isfinite(mk.linear_cross_entropy_backward(1.0, x, w * dtype(1e3), t, b)[0]).all()


def test_out_and_strided_inputs():
    x, w, t, b = _problem(np.float32)
    outs = (np.full_like(x, np.nan), np.full_like(w, np.nan), np.full_like(b, np.nan))
    got = mk.linear_cross_entropy_backward(1.0, x, w, t, b, out=outs)
    assert all(g is o for g, o in zip(got, outs))
    want = mk.linear_cross_entropy_backward(1.0, x, w, t, b)
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)
    xs = np.asfortranarray(x)
    ws = np.repeat(w, 2, axis=1)[:, ::2]
    ts = np.repeat(t, 2)[::2]
    assert mk.linear_cross_entropy(xs, ws, ts, b) == mk.linear_cross_entropy(x, w, t, b)


def test_bad_input_writes_nothing():
    x, w, t, b = _problem(np.float32)
    outs = (np.full_like(x, 7), np.full_like(w, 7), np.full_like(b, 7))
    t_bad = t.copy()
    t_bad[3] = 30
    cases = [
        (dict(target=t_bad), ValueError, "target holds 30"),
        (dict(target=t[:-1]), ValueError, "target has shape"),
        (dict(target=t.astype(np.float32)), TypeError, "integer"),
        (dict(weight=w[:, :-1]), ValueError, "x has shape"),
        (dict(weight=w[0]), ValueError, "weight has shape"),
        (dict(bias=b[:-1]), ValueError, "bias has shape"),
        (dict(bias=b.astype(np.float64)), TypeError, "dtype"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(label_smoothing=2.0), ValueError, "label_smoothing"),
        (dict(chunk_rows=0), ValueError, "chunk_rows"),
        (dict(chunk_rows=2.5), TypeError, "chunk_rows must be an int"),
    ]
    for change, exc, match in cases:
        kw = dict(x=x, weight=w, target=t, bias=b)
        kw.update(change)
        with pytest.raises(exc, match=match):
            mk.linear_cross_entropy(**kw)
        with pytest.raises(exc, match=match):
            mk.linear_cross_entropy_backward(1.0, **kw, out=outs)
    with pytest.raises(ValueError, match="grad_out has shape"):
        mk.linear_cross_entropy_backward(np.ones(3, np.float32), x, w, t, b, reduction="none",
                                         out=outs)
    with pytest.raises(ValueError, match=r"out\[1\] \(grad_weight\) has shape"):
        mk.linear_cross_entropy_backward(1.0, x, w, t, b, out=(None, outs[0], None))
    with pytest.raises(ValueError, match="grad_bias"):
        mk.linear_cross_entropy_backward(1.0, x, w, t, None, out=(None, None, outs[2]))
    for o in outs:
        assert (o == 7).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_with_grad_equals_forward_then_backward(dtype, reduction):
    x, w, t, b = _problem(dtype, N=50, d=9, V=33)
    g = np.random.default_rng(5).standard_normal(50).astype(dtype) if reduction == "none" \
        else 0.6
    kw = dict(reduction=reduction, label_smoothing=0.1, chunk_rows=7)
    loss, *grads = mk.linear_cross_entropy_with_grad(x, w, t, b, grad_out=g, **kw)
    np.testing.assert_array_equal(loss, mk.linear_cross_entropy(x, w, t, b, **kw))
    for a, e in zip(grads, mk.linear_cross_entropy_backward(g, x, w, t, b, **kw)):
        np.testing.assert_array_equal(a, e)
    outs = (np.full_like(x, 7), np.full_like(w, 7), np.full_like(b, 7))
    with pytest.raises(ValueError, match="grad_out has shape"):
        mk.linear_cross_entropy_with_grad(x, w, t, b, grad_out=np.ones(3, dtype),
                                          reduction="none", out=outs)
    assert all((o == 7).all() for o in outs)
