"""Property tests (hypothesis) of the transformer pieces against their float64 references:
shapes with zero and one sizes, strided inputs, index dtypes, chunk sizes, special values."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlkernels as mk
from mlkernels import reference as ref
from mlkernels.testing import assert_close

# 50x the examples under `pytest --hypothesis-profile=long` (registered in tests/conftest.py)
LONG = 50 if settings.default.max_examples >= 5000 else 1
DTYPES = st.sampled_from([np.float32, np.float64])
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 1e30, -1e30]


def _strided(a, step):
    """a as a view with gaps (NaN in them, for floats) when step > 1."""
    if step == 1 or a.ndim == 0:
        return a
    fill = np.nan if a.dtype.kind == "f" else 0
    big = np.full(a.shape[:-1] + (a.shape[-1] * step,), fill, a.dtype)
    view = big[..., ::step]
    view[...] = a
    return view


@settings(max_examples=60 * LONG, deadline=None)
@given(shape=st.lists(st.integers(0, 9), max_size=3), p=st.floats(0, 1), dtype=DTYPES,
       seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**62), step=st.integers(1, 2),
       special=st.booleans())
def test_dropout_equals_reference(shape, p, dtype, seed, offset, step, special):
    rng = np.random.default_rng(len(shape))
    x = np.asarray(rng.standard_normal(shape) * 3, dtype)
    if special and x.size:
        x.reshape(-1)[:: max(1, x.size // 5)] = rng.choice(SPECIALS)
    xs = _strided(x, step)
    with np.errstate(invalid="ignore"):
        want = ref.dropout(x, p, seed, offset)
        got = mk.dropout(xs, p, seed, offset=offset)
        back = mk.dropout_backward(xs, p, seed, offset=offset)
    assert got.shape == x.shape and got.dtype == dtype
    assert_close(got, want, dtype)
    np.testing.assert_array_equal(back, got)
    assert np.array_equal(np.signbit(got), np.signbit(np.asarray(want, dtype)))


@settings(max_examples=60 * LONG, deadline=None)
@given(ishape=st.lists(st.integers(0, 6), max_size=3), V=st.integers(1, 12),
       d=st.integers(0, 9), dtype=DTYPES,
       index_dtype=st.sampled_from(["int64", "int32", "int16", "uint8", "uint64", ">i8"]),
       pad=st.one_of(st.none(), st.integers(-12, 11)), step=st.integers(1, 2),
       special=st.booleans())
def test_embedding_equals_reference(ishape, V, d, dtype, index_dtype, pad, step, special):
    if pad is not None and not -V <= pad < V:
        pad = None
    rng = np.random.default_rng(V * 31 + d)
    idx = rng.integers(0, V, ishape).astype(index_dtype)
    w = np.asarray(rng.standard_normal((V, d)), dtype)
    g = np.asarray(rng.standard_normal(tuple(ishape) + (d,)), dtype)
    if special and w.size:
        w.reshape(-1)[::3] = rng.choice(SPECIALS)
        g.reshape(-1)[::4] = rng.choice(SPECIALS)
    got = mk.embedding(_strided(idx, step), _strided(w, step), padding_idx=pad)
    assert_close(got, ref.embedding(idx, w), dtype)
    assert np.array_equal(np.signbit(got), np.signbit(w[idx]))        # -0.0 is copied as is
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.embedding_backward(g, idx, V, pad)
        gw = mk.embedding_backward(_strided(g, step), idx, V, padding_idx=pad)
    assert_close(gw, want, dtype)


@settings(max_examples=60 * LONG, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(0, 40), max_size=2), max_size=4), dtype=DTYPES,
       norm_type=st.sampled_from([2.0, 1.0, np.inf, -np.inf, 0.0, 3.0, 0.5]),
       factor=st.sampled_from([0.5, 2.0, np.inf]), special=st.booleans())
def test_clip_equals_reference(shapes, dtype, norm_type, factor, special):
    rng = np.random.default_rng(len(shapes))
    grads = [np.asarray(rng.standard_normal(s), dtype) for s in shapes]
    if special and grads and grads[0].size:
        grads[0].reshape(-1)[0] = rng.choice(SPECIALS)
    with np.errstate(all="ignore"):
        total_ref = ref.get_total_norm(grads, norm_type)
        max_norm = total_ref * factor if np.isfinite(total_ref) and factor != np.inf else 1.0
        want_total, want = ref.clip_grad_norm_(grads, max_norm, norm_type)
        total = mk.clip_grad_norm_(grads, max_norm, norm_type)
    assert_close(np.float64(total), want_total, dtype)
    for g, w in zip(grads, want):
        assert_close(g, w, dtype)


@settings(max_examples=40 * LONG, deadline=None)
@given(N=st.integers(0, 9), d=st.integers(0, 5), V=st.integers(1, 12), dtype=DTYPES,
       reduction=st.sampled_from(["mean", "sum", "none"]), eps=st.sampled_from([0.0, 0.3]),
       chunk=st.one_of(st.none(), st.integers(1, 4)), bias=st.booleans(),
       ignore=st.booleans())
def test_linear_cross_entropy_equals_reference(N, d, V, dtype, reduction, eps, chunk, bias,
                                               ignore):
    rng = np.random.default_rng(N * 100 + V)
    x = np.asarray(rng.standard_normal((N, d)), dtype)
    w = np.asarray(rng.standard_normal((V, d)) * 0.5, dtype)
    b = np.asarray(rng.standard_normal(V), dtype) if bias else None
    t = rng.integers(0, V, N)
    if ignore and N:
        t[0] = -100
    kw = dict(reduction=reduction, label_smoothing=eps)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == np.float32 else {}
    with np.errstate(invalid="ignore", divide="ignore"):
        want = ref.linear_cross_entropy(x, w, t, b, **kw)
        got = mk.linear_cross_entropy(x, w, t, b, chunk_rows=chunk, **kw)
    assert_close(np.asarray(got), want, dtype, **tol)
    g = np.asarray(rng.standard_normal(t.shape), dtype) if reduction == "none" else 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        want_g = ref.linear_cross_entropy_backward(g, x, w, t, b, **kw)
        got_g = mk.linear_cross_entropy_backward(g, x, w, t, b, chunk_rows=chunk, **kw)
    for a, e in zip(got_g, want_g):
        if e is None:
            assert a is None
        else:
            assert_close(a, e, dtype, **tol)


def test_docstring_examples_run():
    """The Example sections of the new functions' docstrings, as doctests."""
    import doctest
    runner = doctest.DocTestRunner()
    for f in (mk.dropout, mk.dropout_backward, mk.embedding, mk.embedding_backward,
              mk.clip_grad_norm_, mk.get_total_norm, mk.linear_cross_entropy,
              mk.linear_cross_entropy_backward, mk.linear_cross_entropy_with_grad):
        for test in doctest.DocTestFinder(recurse=False).find(f, f.__name__, globs={}):
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
