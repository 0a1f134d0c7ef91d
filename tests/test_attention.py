"""Attention beyond the spec rows: torch parity, shapes around the kernel's blocks, strided
inputs, empty sequences, special values, the causal mask's NaN semantics, thread-count
independence, memory, and bad input."""
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlkernels as mk
from mlkernels import reference as ref
from mlkernels import _dispatch
from mlkernels.specs.attention import _backward_scale, _forward_scale
from mlkernels.testing import assert_close

# 50x the examples under `pytest --hypothesis-profile=long` (registered in tests/conftest.py)
LONG = 50 if settings.default.max_examples >= 5000 else 1

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]
sdpa, sdpa_backward = mk.scaled_dot_product_attention, mk.scaled_dot_product_attention_backward


def inputs(rng, lead, Tq, Tk, d, dv, dtype=np.float64, scale=1.5):
    q = (rng.standard_normal(lead + (Tq, d)) * scale).astype(dtype)
    k = rng.standard_normal(lead + (Tk, d)).astype(dtype)
    v = rng.standard_normal(lead + (Tk, dv)).astype(dtype)
    return q, k, v


def check_both(q, k, v, g=None, is_causal=False, scale=None, rng=None):
    """Forward and backward against the reference (on the same values, within the error
    scales of mlkernels.specs.attention); returns the results."""
    dtype = q.dtype.newbyteorder("=")
    kw = dict(is_causal=is_causal, scale=scale)
    out, lse = sdpa(q, k, v, return_lse=True, **kw)
    want = ref.scaled_dot_product_attention(q, k, v, return_lse=True, **kw)
    for got, w, s in zip((out, lse), want, _forward_scale((q, k, v), kw)):
        assert got.dtype == dtype and got.flags.c_contiguous
        assert_close(got, w, dtype, scale=s)
    if g is None:
        g = (rng or np.random.default_rng(0)).standard_normal(out.shape).astype(dtype)
    grads = sdpa_backward(g, q, k, v, out, lse, **kw)
    want = ref.scaled_dot_product_attention_backward(g, q, k, v, out, lse, **kw)
    for got, w, s, a in zip(grads, want, _backward_scale((g, q, k, v, out, lse), kw),
                            (q, k, v)):
        assert got.shape == a.shape and got.dtype == dtype and got.flags.c_contiguous
        assert_close(got, w, dtype, scale=s)
    return out, lse, grads


# ------------------------------------------------------------------ parity with torch

@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("Tq, Tk", [(7, 7), (5, 9), (9, 4), (70, 130)])
def test_matches_torch_float64(is_causal, Tq, Tk):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    q, k, v = inputs(rng, (2, 3), Tq, Tk, 8, 5)
    g = rng.standard_normal((2, 3, Tq, 5))
    for scale in (None, 0.4):
        tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_() for a in (q, k, v))
        tout = F.scaled_dot_product_attention(tq, tk, tv, is_causal=is_causal, scale=scale)
        tout.backward(torch.from_numpy(g))
        s = (tq.detach() @ tk.detach().transpose(-1, -2)) * (scale or 8 ** -0.5)
        if is_causal:
            s = s.masked_fill(~torch.ones(Tq, Tk, dtype=torch.bool).tril(), -float("inf"))
        out, lse = sdpa(q, k, v, is_causal=is_causal, scale=scale, return_lse=True)
        assert_close(out, tout.detach().numpy(), np.float64, rtol=1e-12)
        assert_close(lse, torch.logsumexp(s, -1).numpy(), np.float64, rtol=1e-12)
        grads = sdpa_backward(g, q, k, v, out, lse, is_causal=is_causal, scale=scale)
        for ours, t in zip(grads, (tq, tk, tv)):
            assert_close(ours, t.grad.numpy(), np.float64, rtol=1e-11, atol=1e-13)


def test_empty_keys_follow_torch():
    """No keys: torch returns 0 (and its gradients are 0); lse = log 0 = −inf."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    q = np.random.default_rng(0).standard_normal((2, 3, 4))
    k, v = np.zeros((2, 0, 4)), np.zeros((2, 0, 5))
    tq = torch.from_numpy(q).requires_grad_()
    tout = torch.nn.functional.scaled_dot_product_attention(tq, torch.from_numpy(k),
                                                            torch.from_numpy(v))
    tout.sum().backward()
    out, lse = sdpa(q, k, v, return_lse=True)
    np.testing.assert_array_equal(out, tout.detach().numpy())
    assert (lse == -np.inf).all()
    dq, dk, dv = sdpa_backward(np.ones_like(out), q, k, v, out, lse)
    np.testing.assert_array_equal(dq, tq.grad.numpy())
    assert dk.shape == k.shape and dv.shape == v.shape


def test_head_size_zero_is_uniform_as_torch():
    """d = 0: every score is an empty sum, 0, so each query averages the values it sees."""
    rng = np.random.default_rng(0)
    q, k, v = np.zeros((2, 3, 0)), np.zeros((2, 4, 0)), rng.standard_normal((2, 4, 2))
    assert_close(sdpa(q, k, v), np.broadcast_to(v.mean(axis=1, keepdims=True), (2, 3, 2)),
                 np.float64)
    causal = sdpa(q, k, v, is_causal=True)
    assert_close(causal[:, 1], v[:, :2].mean(axis=1), np.float64)
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    assert_close(sdpa(q, k, v), torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(a) for a in (q, k, v))).numpy(), np.float64)


# ------------------------------------------------------------------ shapes, strides, out=

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("Tq, Tk", [(1, 1), (1, 65), (65, 1), (63, 64), (64, 65), (127, 129),
                                    (129, 63), (200, 31)])
def test_sizes_around_the_blocks(dtype, is_causal, Tq, Tk):
    rng = np.random.default_rng(Tq * 1000 + Tk)
    q, k, v = inputs(rng, (2,), Tq, Tk, 33, 17, dtype)
    check_both(q, k, v, is_causal=is_causal, rng=rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_head_sizes(dtype):
    rng = np.random.default_rng(3)
    for d, dv in [(1, 1), (1, 64), (64, 1), (2, 31), (31, 33), (65, 64), (128, 128), (7, 0)]:
        q, k, v = inputs(rng, (1, 2), 20, 23, d, dv, dtype)
        check_both(q, k, v, is_causal=bool(d % 2), rng=rng)


@settings(max_examples=40 * LONG, deadline=None)
@given(lead=st.lists(st.integers(0, 3), max_size=2).map(tuple), Tq=st.integers(0, 80),
       Tk=st.integers(0, 80), d=st.integers(0, 40), dv=st.integers(0, 40),
       causal=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([None, 0.05, 1.0, -0.7]))
def test_property_shapes(lead, Tq, Tk, d, dv, causal, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    q, k, v = inputs(rng, lead, Tq, Tk, d, dv, dtype)
    check_both(q, k, v, is_causal=causal, scale=scale, rng=rng)


def with_nan_gaps(a):
    """A non-contiguous view equal to ``a``, NaN in every element it skips."""
    big = np.full(a.shape[:-1] + (2 * a.shape[-1] + 1,), np.nan, a.dtype)
    view = big[..., 1::2]
    view[...] = a
    return view


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_inputs_read_in_place_or_copied(dtype):
    """(B, T, H, d) arrays viewed as (B, H, T, d), as a transformer passes them, are read in
    place; gapped, reversed and Fortran-ordered ones give the same results."""
    rng = np.random.default_rng(5)
    B, T, H, d = 2, 70, 3, 16
    qkv = rng.standard_normal((B, T, 3, H, d)).astype(dtype)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))     # (B, H, T, d)
    assert not q.flags.c_contiguous
    g = rng.standard_normal((B, T, H, d)).astype(dtype).transpose(0, 2, 1, 3)
    qc, kc, vc, gc = (np.ascontiguousarray(a) for a in (q, k, v, g))
    for causal in (False, True):
        out, lse, grads = check_both(q, k, v, g, is_causal=causal)
        out_c, lse_c = sdpa(qc, kc, vc, is_causal=causal, return_lse=True)
        np.testing.assert_array_equal(out, out_c)
        np.testing.assert_array_equal(lse, lse_c)
        # the forward's output as a strided view too
        o_view = np.empty((B, T, H, d), dtype).transpose(0, 2, 1, 3)
        o_view[...] = out
        grads_c = sdpa_backward(gc, qc, kc, vc, out, lse, is_causal=causal)
        for a, b in zip(sdpa_backward(g, q, k, v, o_view, lse, is_causal=causal), grads_c):
            np.testing.assert_array_equal(a, b)
    for transform in (with_nan_gaps, lambda a: a[:, ::-1], lambda a: a[..., ::-1, :],
                      np.asfortranarray, lambda a: a.astype(a.dtype.newbyteorder()),
                      lambda a: np.broadcast_to(a[:, :1], a.shape)):
        qs, ks, vs = (transform(a) for a in (qc, kc, vc))
        check_both(qs, ks, vs, is_causal=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_arguments(dtype):
    rng = np.random.default_rng(6)
    q, k, v = inputs(rng, (2, 2), 9, 11, 4, 6, dtype)
    out = np.full((2, 2, 9, 6), np.nan, dtype)
    lse = np.full((2, 2, 9), np.nan, dtype)
    assert sdpa(q, k, v, out=out) is out
    want, want_lse = ref.scaled_dot_product_attention(q, k, v, return_lse=True)
    assert_close(out, want, dtype, scale=_forward_scale((q, k, v), dict(
        is_causal=False, scale=None))[0])
    out[...] = np.nan
    res = sdpa(q, k, v, out=(out, lse), return_lse=True)
    assert res[0] is out and res[1] is lse and not np.isnan(lse).any()
    res = sdpa(q, k, v, out=(None, lse), return_lse=True)
    assert res[1] is lse
    g = rng.standard_normal(out.shape).astype(dtype)
    bufs = tuple(np.full(a.shape, np.nan, dtype) for a in (q, k, v))
    grads = sdpa_backward(g, q, k, v, out, lse, out=bufs)
    assert all(a is b for a, b in zip(grads, bufs))
    assert not any(np.isnan(a).any() for a in grads)
    again = sdpa_backward(g, q, k, v, out, lse, out=(None, bufs[1], None))
    assert again[1] is bufs[1]
    for a, b in zip(again, grads):
        np.testing.assert_array_equal(a, b)


def test_read_only_inputs():
    rng = np.random.default_rng(7)
    q, k, v = inputs(rng, (2,), 5, 6, 3, 3, np.float32)
    for a in (q, k, v):
        a.flags.writeable = False
    out, lse = sdpa(q, k, v, return_lse=True)
    g = np.ones_like(out)
    out.flags.writeable = lse.flags.writeable = g.flags.writeable = False
    sdpa_backward(g, q, k, v, out, lse)


# ------------------------------------------------------------------ special values

@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_sequences(dtype):
    rng = np.random.default_rng(8)
    q, k, v = inputs(rng, (2,), 3, 0, 4, 5, dtype)
    out = np.full((2, 3, 5), np.nan, dtype)
    lse = np.full((2, 3), np.nan, dtype)
    sdpa(q, k, v, is_causal=True, out=(out, lse), return_lse=True)
    assert (out == 0).all() and (lse == -np.inf).all()
    bufs = tuple(np.full(a.shape, np.nan, dtype) for a in (q, k, v))
    dq, dk, dv = sdpa_backward(out, q, k, v, out, lse, out=bufs)
    assert (dq == 0).all()
    q, k, v = inputs(rng, (2,), 0, 4, 4, 5, dtype)                      # no queries
    out, lse = sdpa(q, k, v, return_lse=True)
    assert out.shape == (2, 0, 5) and lse.shape == (2, 0)
    bufs = tuple(np.full(a.shape, np.nan, dtype) for a in (q, k, v))
    dq, dk, dv = sdpa_backward(out, q, k, v, out, lse, out=bufs)
    assert (dk == 0).all() and (dv == 0).all()
    q, k, v = inputs(rng, (0, 3), 5, 4, 4, 5, dtype)                    # no heads
    assert sdpa(q, k, v).shape == (0, 3, 5, 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_do_not_overflow(dtype):
    """Scores of ±1e4 (far beyond e^88): the running maximum keeps every exponent <= 0."""
    rng = np.random.default_rng(9)
    q, k, v = inputs(rng, (2,), 70, 90, 8, 4, dtype, scale=1.0)
    q = (q * 1e4 / np.abs(q).max()).astype(dtype)
    k = np.sign(k).astype(dtype)
    for causal in (False, True):
        out, lse = sdpa(q, k, v, is_causal=causal, scale=1.0, return_lse=True)
        assert np.isfinite(out).all() and np.isfinite(lse).all()
        want, want_lse = ref.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0,
                                                          return_lse=True)
        assert_close(lse, want_lse, dtype)
        # one key wins every row (the scores' gaps are ~1e4): out is that key's value
        assert_close(out, want, dtype, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_reaches_exactly_what_depends_on_it(dtype):
    """A NaN in query i makes row i NaN; a NaN in key or value j reaches the queries that see
    j -- and with the causal mask no others, not even inside a diagonal tile, where every
    other result keeps its bits. The gradients likewise."""
    rng = np.random.default_rng(10)
    Tq = Tk = 100
    q, k, v = inputs(rng, (1,), Tq, Tk, 8, 8, dtype)
    g = rng.standard_normal((1, Tq, 8)).astype(dtype)
    for causal in (False, True):
        clean_out, clean_lse = sdpa(q, k, v, is_causal=causal, return_lse=True)
        for which, i in [("q", 3), ("k", 70), ("v", 70), ("k", 0), ("v", 99)]:
            args = {"q": q.copy(), "k": k.copy(), "v": v.copy()}
            args[which][0, i, 2] = np.nan
            out, lse = sdpa(args["q"], args["k"], args["v"], is_causal=causal,
                            return_lse=True)
            want, want_lse = ref.scaled_dot_product_attention(
                args["q"], args["k"], args["v"], is_causal=causal, return_lse=True)
            if which == "q":
                expected = np.arange(Tq) == i
            else:
                expected = np.arange(Tq) >= i if causal else np.ones(Tq, bool)
            np.testing.assert_array_equal(np.isnan(want).any(axis=-1)[0], expected)
            for a, w, clean in ((out, want, clean_out), (lse, want_lse, clean_lse)):
                np.testing.assert_array_equal(np.isnan(a), np.isnan(w))
                np.testing.assert_array_equal(a[~np.isnan(a)], clean[~np.isnan(a)])
            clean_grads = sdpa_backward(g, q, k, v, clean_out, clean_lse, is_causal=causal)
            grads = sdpa_backward(g, args["q"], args["k"], args["v"], out, lse,
                                  is_causal=causal)
            wants = ref.scaled_dot_product_attention_backward(
                g, args["q"], args["k"], args["v"], out, lse, is_causal=causal)
            for a, w, clean in zip(grads, wants, clean_grads):
                np.testing.assert_array_equal(np.isnan(a), np.isnan(w))
                if causal:
                    np.testing.assert_array_equal(a[~np.isnan(a)], clean[~np.isnan(a)])
            if causal and which in ("k", "v") and i == 99:
                assert not np.isnan(grads[0][0, :99]).any()     # only query 99 sees key 99


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_grad_out_and_infinities(dtype):
    rng = np.random.default_rng(11)
    q, k, v = inputs(rng, (1,), 80, 80, 4, 4, dtype)
    out, lse = sdpa(q, k, v, is_causal=True, return_lse=True)
    g = rng.standard_normal(out.shape).astype(dtype)
    g[0, 50, 1] = np.nan
    dq, dk, dv = sdpa_backward(g, q, k, v, out, lse, is_causal=True)
    assert np.isnan(dq[0, 50]).all() and not np.isnan(np.delete(dq[0], 50, 0)).any()
    # query 50 sees keys 0..50: their dk, dv are NaN, the later keys' are not
    assert np.isnan(dv[0, :51]).any(axis=-1).all() and not np.isnan(dv[0, 51:]).any()
    assert not np.isnan(dk[0, 51:]).any()
    # an infinite value where the causal mask hides it changes nothing
    v2 = v.copy()
    v2[0, 60] = np.inf
    out2 = sdpa(q, k, v2, is_causal=True)
    np.testing.assert_array_equal(out2[0, :60], out[0, :60])
    assert not np.isfinite(out2[0, 60:]).all(axis=-1).any()


# ------------------------------------------------------------------ threads

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", [(1,), (3,), (2, 4)])
def test_same_bits_for_any_thread_count_and_schedule(dtype, lead):
    """1, 2 or 3 threads, and the backward's two schedules (whole heads; or key blocks then
    query blocks), compute every element by the same operations."""
    rng = np.random.default_rng(12)
    q, k, v = inputs(rng, lead, 300, 250, 16, 24, dtype)   # large enough for threads
    for causal in (False, True):
        results = []
        for n in (1, 2, 3):
            with mk.threads(n):
                out, lse = sdpa(q, k, v, is_causal=causal, return_lse=True)
                g = np.cos(out)
                results.append((out, lse) + sdpa_backward(g, q, k, v, out, lse,
                                                           is_causal=causal))
        with mk.threads(2):
            N = int(np.prod(lead))
            split = [np.empty_like(a) for a in (q, k, v)]
            heads = lambda a: (a.reshape((N,) + a.shape[-2:]), np.arange(N, dtype=np.int64)
                               * a.shape[-2] * a.shape[-1], a.shape[-1])
            _dispatch.K._attention.backward(
                *heads(g), *heads(q), *heads(k), *heads(v), *heads(out), lse.reshape(N, -1),
                *(a.reshape((N,) + a.shape[-2:]) for a in split), 0.25, causal, 2, True)
        for res in results[1:]:
            for a, b in zip(res, results[0]):
                np.testing.assert_array_equal(a, b)
        for a, b in zip(split, results[0][2:]):
            np.testing.assert_array_equal(a, b)


def test_python_threads_in_parallel():
    """The kernels release the GIL: 6 Python threads calling at once get their own answers."""
    rng = np.random.default_rng(13)
    jobs = [inputs(rng, (2,), 90, 70, 16, 8, np.float32) for _ in range(6)]
    want = [sdpa(*job, is_causal=True) for job in jobs]
    got = [None] * len(jobs)

    def run(i):
        for _ in range(3):
            got[i] = sdpa(*jobs[i], is_causal=True)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ memory

@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_is_linear_in_the_sequence(dtype):
    """Neither direction forms the (Tq, Tk) scores: with T = 4096 they alone would take
    64 MiB (float32) per head; the workspace is a few tiles and one head's K, V per thread."""
    rng = np.random.default_rng(14)
    T, d = 4096, 16
    q, k, v = inputs(rng, (1,), T, T, d, d, dtype)
    out, lse = sdpa(q, k, v, is_causal=True, return_lse=True)
    g = np.ones_like(out)
    bufs = tuple(np.empty_like(a) for a in (q, k, v))
    inputs_bytes = 3 * q.nbytes
    for call in (lambda: sdpa(q, k, v, is_causal=True, out=(out, lse), return_lse=True),
                 lambda: sdpa_backward(g, q, k, v, out, lse, is_causal=True, out=bufs)):
        tracemalloc.start()
        call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        per_thread = 8 * inputs_bytes          # packed copies of one head, and tiles
        assert peak < mk.get_num_threads() * per_thread + (1 << 20), peak
        assert peak < T * T * q.itemsize / 8


# ------------------------------------------------------------------ bad input

def test_bad_input_raises_before_writing():
    rng = np.random.default_rng(15)
    q, k, v = inputs(rng, (2,), 5, 6, 4, 3, np.float32)
    out = np.full((2, 5, 3), 7, np.float32)
    lse = np.full((2, 5), 7, np.float32)

    def bad(error, match, *args, **kw):
        with pytest.raises(error, match=match):
            sdpa(*args, **kw)
        assert (out == 7).all() and (lse == 7).all()

    bad(TypeError, "dtype", q, k, v.astype(np.float64), out=out)
    bad(TypeError, "dtype", q.astype(np.int32), k, v, out=out)
    bad(TypeError, "numpy.ndarray", q.tolist(), k, v, out=out)
    bad(ValueError, "at least 2-d", q[0, 0], k, v, out=out)
    bad(ValueError, "head size", q, k[..., :3], v, out=out)
    bad(ValueError, "one value per key", q, k, v[:, :5], out=out)
    bad(ValueError, "leading", q, k[:1], v[:1], out=out)
    bad(ValueError, "leading", q[None], k, v, out=out)
    bad(ValueError, "scale", q, k, v, scale=float("nan"), out=out)
    bad(ValueError, "scale", q, k, v, scale=float("inf"), out=out)
    bad(TypeError, "scale", q, k, v, scale="0.5", out=out)
    bad(TypeError, "scale", q, k, v, scale=True, out=out)
    bad(TypeError, "is_causal", q, k, v, is_causal=1, out=out)
    bad(TypeError, "return_lse", q, k, v, return_lse="yes", out=out)
    bad(ValueError, "out has shape", q, k, v, out=out[:, :4])
    bad(ValueError, "dtype", q, k, v, out=out.astype(np.float64))
    bad(ValueError, "C-contiguous", q, k, v, out=np.full((2, 3, 5), 7, np.float32)
        .transpose(0, 2, 1))
    ro = out.copy()
    ro.flags.writeable = False
    bad(ValueError, "read-only", q, k, v, out=ro)
    bad(TypeError, "tuple", q, k, v, out=out, return_lse=True)
    bad(ValueError, "lse", q, k, v, out=(out, lse[:, :4]), return_lse=True)
    bad(ValueError, "overlaps", q, k, v, out=(out, out.reshape(-1)[:10].reshape(2, 5)),
        return_lse=True)
    qq = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        sdpa(qq, k[..., :3], v, out=qq)


def test_bad_backward_input_raises_before_writing():
    rng = np.random.default_rng(16)
    q, k, v = inputs(rng, (2,), 5, 6, 4, 3, np.float32)
    out, lse = sdpa(q, k, v, return_lse=True)
    g = np.ones_like(out)
    bufs = tuple(np.full(a.shape, 7, np.float32) for a in (q, k, v))

    def bad(error, match, *args, **kw):
        with pytest.raises(error, match=match):
            sdpa_backward(*args, **kw)
        assert all((b == 7).all() for b in bufs)

    bad(ValueError, "grad_out has shape", g[:, :4], q, k, v, out, lse, out=bufs)
    bad(ValueError, "output has shape", g, q, k, v, out[..., :2], lse, out=bufs)
    bad(ValueError, "lse has shape", g, q, k, v, out, lse[:, None], out=bufs)
    bad(TypeError, "dtype", g, q, k, v, out, lse.astype(np.float64), out=bufs)
    bad(ValueError, "head size", g, q, k[..., :2], v, out, lse, out=bufs)
    bad(TypeError, "tuple", g, q, k, v, out, lse, out=bufs[0])
    bad(TypeError, "tuple", g, q, k, v, out, lse, out=bufs[:2])
    bad(ValueError, r"out\[1\] \(dk\) has shape", g, q, k, v, out, lse,
        out=(bufs[0], bufs[2], None))
    bad(ValueError, "overlaps", g, q, k, v, out, lse, out=(q, None, None))
    bad(ValueError, "scale", g, q, k, v, out, lse, scale=float("nan"), out=bufs)
    with pytest.raises(TypeError):
        sdpa_backward(g, q, k, v, out=out, lse=lse)        # the arrays are positional
