"""Activations on 16-bit storage (bfloat16 of ml_dtypes, numpy float16): every activation,
forward and backward, gives the float32 kernel's result on the widened inputs, rounded once to
nearest even -- bit for bit, NaN included -- on every ISA variant (portable and hardware
conversions), through both of its paths (the blockwise driver, and the one-pass loops of the
memory-bound rows), serial and threaded, streamed and not, in place, strided; bad inputs raise
before anything is written.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlkernels as mk
from mlkernels import activations as act
from mlkernels._dispatch import K
from mlkernels.specs.activations import ACTIVATIONS

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = [BF16, np.dtype(np.float16)]
IDS = ["bfloat16", "float16"]
KIND = {BF16: 1, np.dtype(np.float16): 2}
# (spec row, public function, keyword arguments, operation code), every kernel of the table
ROWS = [(row, name, params, getattr(act, row.replace("[tanh]", "_tanh").upper()))
        for row, name, params, _ in ACTIVATIONS]
ROW_IDS = [r[0] for r in ROWS]
# every 16-bit pattern: ±0, subnormals, normals, ±inf, NaNs (quiet and signalling)
EVERY = np.arange(2**16, dtype=np.uint32).astype(np.uint16)


def f32(a):
    return a.astype(np.float32)


def rounded(expected_f32, dtype):
    with np.errstate(all="ignore"):
        return np.asarray(expected_f32, np.float32).astype(dtype)


def is_nan(u, dtype):
    return (u & 0x7FFF) > (0x7F80 if dtype == BF16 else 0x7C00)


def same_bits(got, expected_f32, dtype):
    """got (16-bit) == the float32 result rounded with ml_dtypes / NumPy, bit for bit; a NaN
    where the float32 result is NaN, of any sign and payload: the float32 kernels themselves
    do not fix those (gelu(-NaN) is -NaN in their vector loop and +NaN in its scalar tail:
    x·Φ(x) multiplies two NaNs, and x86 returns the first operand's, whichever GCC put first)."""
    assert got.dtype == dtype
    expected = rounded(expected_f32, dtype)
    assert got.shape == expected.shape
    g, e = got.view(np.uint16).reshape(-1), expected.view(np.uint16).reshape(-1)
    bad = np.flatnonzero((g != e) & ~(is_nan(g, dtype) & is_nan(e, dtype)))
    assert bad.size == 0, (bad.size, bad[:5], g[bad[:5]], e[bad[:5]])


def quiet_patterns(dtype, u):
    """The patterns u, float16's signalling NaNs made quiet: _half.h widens a signalling
    float16 NaN to a quiet float32 NaN (as F16C does), so a kernel never sees one, while NumPy
    keeps it signalling, and a float32 select would pass it on as such. (bfloat16 widens by a
    shift on both sides: its signalling NaNs stay in.)"""
    u = u.copy()
    if dtype == np.float16:
        nan = (u & 0x7FFF) > 0x7C00
        u[nan] |= 0x0200
    return u


def patterns(dtype, seed=0, size=None):
    """Every 16-bit pattern (size None) or size random ones, signalling NaNs made quiet."""
    rng = np.random.default_rng(seed)
    u = EVERY if size is None else rng.integers(0, 2**16, size, dtype=np.uint16)
    return quiet_patterns(dtype, u).view(dtype)


def call(name, params, *arrays, out=None):
    return getattr(mk, name)(*arrays, **params, out=out)


def check(name, params, dtype, x, g=None):
    """forward (g None) or backward of 16-bit arrays == float32 on the widened ones, rounded."""
    if g is None:
        same_bits(call(name, params, x), call(name, params, f32(x)), dtype)
    else:
        same_bits(call(name + "_backward", params, g, x),
                  call(name + "_backward", params, f32(g), f32(x)), dtype)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("row, name, params, op", ROWS, ids=ROW_IDS)
def test_every_pattern(isa, row, name, params, op, dtype):
    """Forward over all 65536 patterns; backward over all of them as x and as grad_out."""
    x = patterns(dtype)
    check(name, params, dtype, x)
    g = patterns(dtype, 1, x.size)
    check(name, params, dtype, x, g)
    check(name, params, dtype, g, x)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "blockwise"])
@pytest.mark.parametrize("row, name, params, op", ROWS, ids=ROW_IDS)
def test_both_paths(isa, row, name, params, op, dtype, fused):
    """The driver's entry with and without the one-pass loops (relu on the bits, the
    memory-bound rows' fused loops in bfloat16) gives the same bits."""
    x, g = patterns(dtype), patterns(dtype, 2, 2**16)
    numbers = [v for v in params.values() if not isinstance(v, str)]
    for grad in (None, g):
        y = np.full_like(x, np.nan)
        K._activations.half(op, KIND[dtype], grad, x, y, *numbers, fused=fused)
        expected = call(name, params, f32(x)) if grad is None else \
            call(name + "_backward", params, f32(grad), f32(x))
        same_bits(y, expected, dtype)


def test_driver_entry_checks_what_its_loops_trust():
    x = patterns(BF16, 8, 64)
    with pytest.raises(ValueError, match="one size"):
        K._activations.half(act.RELU, 1, None, x, np.empty(32, BF16))
    with pytest.raises(ValueError, match="one size"):
        K._activations.half(act.GELU, 1, x[:32], x, np.empty(64, BF16))
    with pytest.raises(ValueError, match="one size"):
        K._activations.half(act.GELU, 1, None, x, np.empty(64, np.float32))
    with pytest.raises(ValueError, match="out of range"):
        K._activations.half(99, 1, None, x, np.empty(64, BF16))


def test_fused_ops_are_the_memory_bound_rows():
    ops = K._activations.fused_ops()
    assert act.RELU in ops and act.LEAKY_RELU in ops and act.GELU not in ops


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("slope", [1.00390625, 3.0, 2.0**-130, 1e30])
def test_leaky_relu_rounding_ties_and_range(isa, dtype, slope):
    """slope·x rounds: 1 + 2^-8 puts many products exactly halfway between two 16-bit values
    (ties to even), 3 overflows float16's range, 2^-130 gives subnormal and zero float32
    results, 1e30 overflows bfloat16's."""
    x, g = patterns(dtype), patterns(dtype, 3, 2**16)
    check("leaky_relu", {"negative_slope": slope}, dtype, x)
    check("leaky_relu", {"negative_slope": slope}, dtype, x, g)
    if slope == 1.00390625:       # the test means what it says: ties do occur
        with np.errstate(all="ignore"):
            exact = f32(x).astype(np.float64) * np.float32(slope)
            halfway = (exact != rounded(exact.astype(np.float32), dtype).astype(np.float64))
        assert halfway.sum() > 1000


SIZES = [(0,), (1,), (), (7,), (33,), (3, 4, 5), (0, 3)]


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("row, name, params, op", ROWS, ids=ROW_IDS)
def test_shapes_and_threads(isa, row, name, params, op, dtype):
    """Empty, 0-d, size-1 and tail shapes; and 300000 values (more than any serial threshold:
    OpenMP chunks), each with a dtype and a shape of x's."""
    rng = np.random.default_rng(4)
    for shape in SIZES + [(300000,)]:
        x = np.asarray(rng.standard_normal(shape) * 4, np.float32).astype(dtype)
        g = np.asarray(rng.standard_normal(shape), np.float32).astype(dtype)
        y, gx = call(name, params, x), call(name + "_backward", params, g, x)
        assert y.shape == gx.shape == x.shape and y.dtype == gx.dtype == dtype
        check(name, params, dtype, x)
        check(name, params, dtype, x, g)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("row, name, params, op", ROWS, ids=ROW_IDS)
def test_streamed_in_place_and_strided(stream_everything, row, name, params, op, dtype):
    """Streamed outputs (every size streams here), out= given, in place (out is x; for the
    backward out is grad_out, then x), strided and reversed inputs (copied once)."""
    x, g = patterns(dtype, 5, 5001), patterns(dtype, 6, 5001)
    y = call(name, params, f32(x))
    gx = call(name + "_backward", params, f32(g), f32(x))
    out = np.full_like(x, np.nan)
    assert call(name, params, x, out=out) is out
    same_bits(out, y, dtype)
    inplace = x.copy()
    assert call(name, params, inplace, out=inplace) is inplace
    same_bits(inplace, y, dtype)
    for which in ("grad_out", "x"):
        gc, xc = g.copy(), x.copy()
        target = gc if which == "grad_out" else xc
        assert call(name + "_backward", params, gc, xc, out=target) is target
        same_bits(target, gx, dtype)
    wide, wide_g = np.empty(2 * x.size, dtype), np.empty(2 * x.size, dtype)
    wide[::2], wide[1::2] = x, np.nan                # NaN in the gaps: a kernel reading them fails
    wide_g[::2], wide_g[1::2] = g, np.nan
    same_bits(call(name, params, wide[::2]), y, dtype)
    same_bits(call(name + "_backward", params, wide_g[::2], wide[::2]), gx, dtype)
    same_bits(call(name, params, x[::-1]), y[::-1], dtype)
    m = x[:5000].reshape(50, 100)
    same_bits(call(name, params, m.T), call(name, params, f32(m).T), dtype)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_nan_stays_nan(isa, dtype):
    """NaN in, NaN out (forward); the backward is NaN exactly where float32's is."""
    x = np.array([np.nan, -np.nan, 1.0, -1.0], np.float32).astype(dtype)
    for _, name, params, _ in ROWS:
        assert np.isnan(f32(call(name, params, x))[:2]).all(), name
        gx = f32(call(name + "_backward", params, np.ones_like(x), x))
        expected = call(name + "_backward", params, np.ones(4, np.float32), f32(x))
        assert (np.isnan(gx) == np.isnan(expected)).all(), name


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_bad_inputs_raise_before_writing(dtype):
    x = patterns(dtype, 7, 64)
    other = BF16 if dtype != BF16 else np.dtype(np.float16)
    sentinel = np.full(64, 1.5, dtype)

    def untouched(out):
        assert (out.view(np.uint16) == sentinel.view(np.uint16)).all()
    out = sentinel.copy()
    with pytest.raises(TypeError, match="x has dtype .* but grad_out has dtype float32"):
        mk.gelu_backward(f32(x), x, out=out)
    with pytest.raises(TypeError, match="has dtype"):
        mk.silu_backward(x, x.astype(other), out=out)
    with pytest.raises(TypeError, match="has dtype"):
        mk.relu_backward(x.astype(np.float32), x, out=out)
    untouched(out)
    for name in ("relu", "leaky_relu", "gelu", "tanh"):
        with pytest.raises(ValueError, match="out has dtype float32; expected"):
            getattr(mk, name)(x, out=np.empty(64, np.float32))
        with pytest.raises(ValueError, match="out has dtype"):
            getattr(mk, name)(x, out=np.empty(64, other))
        ro = sentinel.copy()
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            getattr(mk, name)(x, out=ro)
        with pytest.raises(ValueError, match="shape"):
            getattr(mk, name)(x, out=np.empty(63, dtype))
        with pytest.raises(ValueError, match="overlaps"):
            buf = np.zeros(65, dtype)
            buf[1:] = x
            getattr(mk, name)(buf[1:], out=buf[:64])
        with pytest.raises(ValueError, match="shape"):
            getattr(mk, name + "_backward")(x[:63], x, out=out)
    untouched(out)
    with pytest.raises(ValueError, match="negative_slope"):
        mk.leaky_relu(x, np.nan, out=out)
    untouched(out)
    with pytest.raises(TypeError, match="expected float32, float64, bfloat16"):
        mk.relu(x.view(np.int16))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1), half=st.sampled_from(HALF),
       row=st.sampled_from(ROWS), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]))
def test_property_random_data(n, seed, half, row, scale):
    """Random sizes and scales (tiny, ordinary, saturating, overflowing), serial."""
    _, name, params, _ = row
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(n) * scale).astype(np.float32).astype(half)
    g = rng.standard_normal(n).astype(np.float32).astype(half)
    check(name, params, half, x)
    check(name, params, half, x, g)
