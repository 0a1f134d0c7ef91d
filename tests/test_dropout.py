"""Dropout and its generator: Philox4x32-10 against Random123's known answers, the statistics
of the masks (no parity with torch's masks is possible: another generator), reproducibility
across threads, ISA variants and restarts, torch's semantics at p = 0 and 1, bad input."""
import numpy as np
import pytest

import mlkernels as mk
from mlkernels import _runtime
from mlkernels import _dispatch
from mlkernels import reference as ref
from mlkernels._dispatch import K
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]

# Random123 v1.14, tests/kat_vectors lines 27-29 (github.com/DEShawResearch/random123):
# "philox4x32 10" counter[4] key[2] -> output[4]
KAT = [
    ([0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000],
     [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    ([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff],
     [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
    ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0],
     [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    c = np.array(counter, np.uint32)
    K._dropout.philox4x32_10(c, np.array(key, np.uint32))
    assert c.tolist() == expected
    assert ref.philox4x32_10(counter, key).tolist() == expected


def test_vectorized_tile_equals_one_counter_at_a_time():
    """mlk_philox_tile (SIMD lanes) against mlk_philox4x32_10 (the definition), including
    tiles whose counters need the high word."""
    words = np.empty(64, np.uint32)
    for tile in (0, 1, 12345, 2**28 - 1, 2**28, 2**32 + 7, 2**59 + 3):
        for k0, k1 in ((0, 0), (0xDEADBEEF, 0x01234567), (0xFFFFFFFF, 0xFFFFFFFF)):
            K._dropout.philox_tile(tile, k0, k1, words)
            for lane in range(16):
                c = 16 * tile + lane
                ctr = np.array([c & 0xFFFFFFFF, c >> 32, 0, 0], np.uint32)
                K._dropout.philox4x32_10(ctr, np.array([k0, k1], np.uint32))
                assert words[lane::16].tolist() == ctr.tolist(), (tile, lane, k0, k1)


@pytest.mark.parametrize("offset", [0, 1, 63, 64, 127, 128, 1000, 2**40 + 77, 2**64 - 3000])
def test_uniforms_equal_the_reference(offset):
    seed = 0x0123456789ABCDEF
    u = np.empty(3000, np.uint16)
    K._dropout.philox_u16(offset, seed & 0xFFFFFFFF, seed >> 32, u)
    np.testing.assert_array_equal(u, ref.dropout_uniforms(3000, seed, offset))


# ------------------------------------------------------------------ statistics

N = 1 << 20


def _kept(p, seed=2024, offset=0, n=N):
    return mk.dropout(np.ones(n, np.float32), p, seed, offset=offset) != 0


def _correlation(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9, 0.999])
def test_keep_rate_within_binomial_bounds(p):
    """The number dropped is Binomial(n, q), q = ceil(65536 p)/65536 (within 2^-16 of p):
    within 5 standard deviations (a false alarm once in ~2 million runs)."""
    q = np.ceil(p * 65536) / 65536
    assert abs(q - p) <= 2**-16
    for seed, offset in ((1, 0), (99, 12345), (2**64 - 1, 2**50)):
        dropped = int((~_kept(p, seed, offset)).sum())
        sd = np.sqrt(N * q * (1 - q))
        assert abs(dropped - N * q) <= 5 * sd, (p, seed, dropped, N * q)


def test_uniforms_are_uniform_and_every_bit_is_fair():
    u = ref.dropout_uniforms(0, 0)  # (empty: the reference handles n = 0)
    assert u.size == 0
    u = np.empty(N, np.uint16)
    K._dropout.philox_u16(777, 31337, 0, u)
    counts = np.bincount(u >> 8, minlength=256)                    # 256 equal bins
    expected = N / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 5 * np.sqrt(2 * 255), chi2                 # chi-square, 255 dof
    bits = (u[:, None] >> np.arange(16)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) <= 5 * 0.5 / np.sqrt(N))


@pytest.mark.parametrize("lag", [1, 2, 15, 16, 17, 63, 64, 65, 128, 2048])
def test_no_correlation_between_neighbours(lag):
    """Neighbours, and the lags where the generator's layout could show: 16 (the next word of
    the same counter), 64 (the other half of the same word), 128 (the next tile), 2048 (the
    next block of a thread)."""
    m = _kept(0.5, seed=5)
    assert abs(_correlation(m[:-lag], m[lag:])) < 5 / np.sqrt(N), lag


def test_no_correlation_between_consecutive_offsets_and_seeds():
    base = _kept(0.5, seed=11, offset=1000)
    for other in (_kept(0.5, seed=11, offset=1001),     # the next offset
                  _kept(0.5, seed=11, offset=1000 + N),  # the next call's offset
                  _kept(0.5, seed=12, offset=1000),      # the next seed
                  _kept(0.5, seed=11 + 2**32, offset=1000)):   # the key's high word
        assert abs(_correlation(base, other)) < 5 / np.sqrt(N)


def test_offset_shifts_the_stream_by_elements():
    """offset = k is the stream seen k elements later: a call over x[k:] at offset o + k
    continues a call over x[:k] at offset o, so a run restarts from (seed, offset)."""
    x = np.random.default_rng(0).standard_normal(100_003).astype(np.float32)
    whole = mk.dropout(x, 0.4, 9, offset=70)
    for k in (1, 127, 128, 2048, 50_001):
        parts = np.concatenate([mk.dropout(x[:k], 0.4, 9, offset=70),
                                mk.dropout(x[k:], 0.4, 9, offset=70 + k)])
        np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_backward_masks_are_identical(dtype):
    ones = np.ones((300, 301), dtype)
    for p, seed, offset in ((0.5, 3, 0), (0.1, 2**40, 999), (0.97, 7, 2**33)):
        fwd = mk.dropout(ones, p, seed, offset=offset)
        bwd = mk.dropout_backward(ones, p, seed, offset=offset)
        np.testing.assert_array_equal(fwd, bwd)
        x = np.random.default_rng(1).standard_normal(ones.shape).astype(dtype)
        np.testing.assert_array_equal(mk.dropout(x, p, seed, offset=offset) == 0, fwd == 0)
    # and float32 and float64 draw the same mask
    np.testing.assert_array_equal(mk.dropout(np.ones(5000, np.float32), 0.5, 1) == 0,
                                  mk.dropout(np.ones(5000, np.float64), 0.5, 1) == 0)


def test_same_bits_for_any_thread_count_isa_and_streaming():
    x = np.random.default_rng(3).standard_normal(300_007).astype(np.float32)
    with mk.threads(1):
        want = mk.dropout(x, 0.3, 42, offset=5)
    for n in (2, 3, 4):
        with mk.threads(n):
            np.testing.assert_array_equal(mk.dropout(x, 0.3, 42, offset=5), want)
    for isa in mk.available_isas:
        with _dispatch.isa(isa):
            old = _runtime.set_stream_from(0)
            try:
                np.testing.assert_array_equal(mk.dropout(x, 0.3, 42, offset=5), want, isa)
                y = x.copy()
                mk.dropout(y, 0.3, 42, offset=5, out=y)                # in place, streamed
                np.testing.assert_array_equal(y, want, isa)
            finally:
                _runtime.set_stream_from(old)
            np.testing.assert_array_equal(mk.dropout(x, 0.3, 42, offset=5), want, isa)


# ------------------------------------------------------------------ torch's semantics

@pytest.mark.parametrize("dtype", DTYPES)
def test_p0_and_eval_are_an_identity_that_writes_out(dtype):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(dtype)
    for kwargs in (dict(p=0.0), dict(p=0.5, training=False), dict(p=1.0, training=False)):
        out = np.full_like(x, np.nan)
        assert mk.dropout(x, seed=1, out=out, **kwargs) is out
        np.testing.assert_array_equal(out, x)
        y = mk.dropout(x, seed=1, **kwargs)
        assert y is not x and np.array_equal(y, x)
    out = np.full_like(x, np.nan)
    assert mk.dropout_backward(x, 0.0, 1, out=out) is out and np.array_equal(out, x)
    y = x.copy()
    assert mk.dropout(y, 0.0, 1, out=y) is y and np.array_equal(y, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_p1_gives_x_times_zero_as_torch(dtype):
    x = np.array([1.5, -2.0, 0.0, -0.0, np.inf, np.nan] * 7, dtype)
    with np.errstate(invalid="ignore"):
        want = x * 0
    for f in (lambda: mk.dropout(x, 1.0, 3), lambda: mk.dropout_backward(x, 1.0, 3),
              lambda: mk.dropout(x, 1 - 2**-20, 3)):
        y = f()
        np.testing.assert_array_equal(y, want)
        assert np.array_equal(np.signbit(y), np.signbit(want))
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    t = torch.nn.functional.dropout(torch.from_numpy(x.copy()), 1.0).numpy()
    np.testing.assert_array_equal(mk.dropout(x, 1.0, 3), t)


def test_kept_values_and_dropped_nan_as_torch():
    """Masks differ (another generator), but where both keep an element the values are the
    same bits (x·(1/(1 − p)) in float64), and a dropped NaN or inf becomes NaN in both."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    x = np.random.default_rng(0).standard_normal(4000)
    x[::97] = np.nan
    x[5::97] = np.inf
    torch.manual_seed(0)
    theirs = torch.nn.functional.dropout(torch.from_numpy(x.copy()), 0.3).numpy()
    ours = mk.dropout(x, 0.3, 5)
    both = (ours != 0) & (theirs != 0) & np.isfinite(x)
    assert both.sum() > 1000
    np.testing.assert_array_equal(ours[both], theirs[both])
    dropped_bad = ~np.isfinite(x) & (mk.dropout(np.ones_like(x), 0.3, 5) == 0)
    assert dropped_bad.any() and np.isnan(ours[dropped_bad]).all()
    assert abs((theirs == 0).mean() - (ours == 0).mean()) < 0.05


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_empty_inputs(dtype):
    x = np.random.default_rng(0).standard_normal((40, 30)).astype(dtype)
    view = x[::2, ::-3]
    assert_close(mk.dropout(view, 0.2, 8, offset=3), ref.dropout(view, 0.2, 8, 3), dtype)
    assert mk.dropout(np.zeros((0, 4), dtype), 0.5, 1).shape == (0, 4)
    assert mk.dropout(np.array(2.0, dtype), 0.5, 1).shape == ()


# ------------------------------------------------------------------ bad input

def test_bad_input_writes_nothing():
    x = np.ones((3, 4), np.float32)
    out = np.full((3, 4), 7, np.float32)
    bad = [
        (dict(p=1.5), ValueError, "p is 1.5"), (dict(p=-0.1), ValueError, "p"),
        (dict(p=float("nan")), ValueError, "p"), (dict(p="0.5"), TypeError, "p"),
        (dict(seed=-1), ValueError, "seed is -1"), (dict(seed=2**64), ValueError, "seed"),
        (dict(seed=1.0), TypeError, "seed"), (dict(seed=True), TypeError, "seed"),
        (dict(offset=-5), ValueError, "offset is -5"),
        (dict(offset=2**64 - 5), ValueError, "exceeds 2\\*\\*64"),
        (dict(offset=None), TypeError, "offset"),
    ]
    for change, exc, match in bad:
        kwargs = dict(p=0.5, seed=1, offset=0, **{})
        kwargs.update(change)
        for f in (lambda: mk.dropout(x, out=out, **kwargs),
                  lambda: mk.dropout_backward(x, out=out, **kwargs)):
            with pytest.raises(exc, match=match):
                f()
            assert (out == 7).all()
    with pytest.raises(TypeError, match="x has dtype int64"):
        mk.dropout(np.ones(3, np.int64), 0.5, 1)
    with pytest.raises(TypeError, match="training"):
        mk.dropout(x, 0.5, 1, training="yes")
    with pytest.raises(ValueError, match="out has shape"):
        mk.dropout(x, 0.5, 1, out=np.empty(12, np.float32))
    with pytest.raises(ValueError, match="overlaps"):
        buf = np.ones(13, np.float32)
        mk.dropout(buf[:12], 0.5, 1, out=buf[1:])
    assert mk.dropout(x, 0.5, 1, offset=2**64 - 12).shape == x.shape   # the last counters
