"""16-bit storage conversions (_half.h): float32 <-> bfloat16 / float16, bit for bit against
ml_dtypes (bfloat16) and NumPy (float16), on every ISA variant and on both paths: the
hardware one the variant takes (AVX-512 BF16, F16C) and the portable integer one (which the
baseline variant always takes, and avx2 for bfloat16; `portable=True` forces it anywhere).
And the dtype rules of _validate.storage_dtype, with and without ml_dtypes.
"""
import subprocess
import tempfile
import sys

import numpy as np
import pytest

#: an empty folder for child interpreters (not the repository's root, whose source tree would
#: shadow the installed package)
NEUTRAL = tempfile.mkdtemp(prefix="mlkernels-neutral-")

from mlkernels import _dispatch
from mlkernels import _validate as V

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
KIND = {"bfloat16": 1, "float16": 2}
DTYPE = {"bfloat16": BF16, "float16": np.dtype(np.float16)}
QUIET = {"bfloat16": 0x0040, "float16": 0x0200}


def narrow(f32, kind, portable):
    f32 = np.ascontiguousarray(f32, np.float32)
    out = np.empty(f32.shape, np.uint16)
    _dispatch.K._convert.narrow(f32, out, KIND[kind], portable)
    return out


def widen(u16, kind, portable):
    u16 = np.ascontiguousarray(u16, np.uint16)
    out = np.empty(u16.shape, np.float32)
    _dispatch.K._convert.widen(u16, out, KIND[kind], portable)
    return out.view(np.uint32)


def float32_cases(kind):
    """float32 bit patterns that probe rounding: every 16-bit value's float32 (exact), the
    midpoints between neighbours (ties: even and odd kept parts), a unit of the last place
    either side of each midpoint, every float32 subnormal region, the overflow edge, specials
    (±0, ±inf, quiet and signalling NaNs with payloads) and random bits."""
    h = np.arange(1 << 16, dtype=np.uint32)
    if kind == "bfloat16":
        exact = h << 16
        mid = exact + 0x8000
    else:
        f = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
        f = f[np.isfinite(f)].astype(np.float32)
        exact = f.view(np.uint32)
        with np.errstate(over="ignore"):
            nxt = np.nextafter(f.astype(np.float16), np.float16(np.inf)).astype(np.float32)
        mid = ((f.astype(np.float64) + nxt.astype(np.float64)) / 2).astype(np.float32).view(np.uint32)
    rng = np.random.default_rng(7)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
                        0x7F800001, 0xFF800001, 0x7FA00000, 0x7FC12345, 0xFFFFFFFF,
                        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x477FF000, 0x477FEFFF,
                        0x477FE000, 0x00000001, 0x00008000, 0x00018000, 0x007FFFFF,
                        0x00800000, 0x33000000, 0x33000001, 0x32FFFFFF, 0x38800000,
                        0x387FFFFF, 0x387FE000, 0x387FF000], np.uint32)
    parts = [exact, mid, mid + 1, mid - 1, special,
             rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint32),
             rng.integers(0, 1 << 24, 1 << 16, dtype=np.uint32),          # subnormals, small
             rng.integers(0x33000000, 0x39000000, 1 << 18, dtype=np.uint32),  # f16 subnormals
             rng.integers(0x33000000, 0x39000000, 1 << 16, dtype=np.uint32) | 0x80000000]
    return np.concatenate(parts).astype(np.uint32)


def is_nan_bits(u, kind):
    if kind == "bfloat16":
        return (u & 0x7FFF) > 0x7F80
    return (u & 0x7FFF) > 0x7C00


@pytest.mark.parametrize("portable", [False, True], ids=["variant_path", "portable"])
@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
def test_narrow_bits_match_ml_dtypes_and_numpy(isa, kind, portable):
    bits = float32_cases(kind)
    f32 = bits.view(np.float32)
    with np.errstate(all="ignore"):
        expected = f32.astype(DTYPE[kind]).view(np.uint16)
    got = narrow(f32, kind, portable)
    nan_in = np.isnan(f32)
    signalling = nan_in & ((bits & 0x00400000) == 0)
    # every non-NaN input and every quiet NaN: the same bits
    same = ~signalling
    bad = np.flatnonzero(got[same] != expected[same])
    assert bad.size == 0, [(hex(bits[same][i]), hex(got[same][i]), hex(expected[same][i]))
                           for i in bad[:8]]
    # signalling NaNs: a quiet NaN of the same sign (NumPy keeps float16's signalling)
    s = got[signalling]
    assert is_nan_bits(s, kind).all() and ((s & QUIET[kind]) != 0).all()
    assert ((s >> 15) == (bits[signalling] >> 31)).all()


@pytest.mark.parametrize("portable", [False, True], ids=["variant_path", "portable"])
@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
def test_widen_every_16_bit_value(isa, kind, portable):
    h = np.arange(1 << 16, dtype=np.uint16)
    expected = h.view(DTYPE[kind]).astype(np.float32).view(np.uint32)
    got = widen(h, kind, portable)
    signalling = is_nan_bits(h, kind) & ((h & QUIET[kind]) == 0)
    assert (got[~signalling] == expected[~signalling]).all()
    g = got[signalling].view(np.float32)
    assert np.isnan(g).all() and (np.signbit(g) == ((h[signalling] >> 15) == 1)).all()


@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
def test_round_trip_and_odd_lengths(isa, kind):
    # lengths around the vector widths (16, 32 lanes) so that every tail loop runs
    h = np.arange(1 << 16, dtype=np.uint16)
    finite = h[~is_nan_bits(h, kind)]
    for n in [0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 100, finite.size]:
        assert (narrow(widen(finite[:n], kind, False).view(np.float32), kind, False)
                == finite[:n]).all()


def test_paths_per_variant(isa):
    import mlkernels._cpu  # noqa: F401  (the probe is there; the path report is per variant)
    paths = _dispatch.K._convert.paths()
    if isa == "baseline":
        assert paths == {"bfloat16": "portable", "float16": "portable"}
    elif isa == "avx2":
        assert paths == {"bfloat16": "portable", "float16": "f16c"}
    else:
        assert paths["float16"] == "f16c"
        has_bf16 = "avx512_bf16" in open("/proc/cpuinfo").read() if sys.platform == "linux" else None
        if has_bf16 is not None:
            assert paths["bfloat16"] == ("avx512bf16" if has_bf16 else "portable")


def test_forced_variant_takes_portable_path():
    """MLKERNELS_ISA forces the portable bfloat16 path (avx2) and both (baseline)."""
    code = ("import mlkernels._dispatch as d; print(d.K._convert.paths()['bfloat16'], "
            "d.K._convert.paths()['float16'])")
    for isa, expected in [("baseline", "portable portable"), ("avx2", "portable f16c")]:
        if isa not in _dispatch.available_isas:
            continue
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=NEUTRAL,
                             env={**__import__("os").environ, "MLKERNELS_ISA": isa}, check=True)
        assert out.stdout.split() == expected.split()


# ---------------------------------------------------------------- the dtype rules

def test_storage_dtype_accepts_one_dtype():
    for dt in [np.float32, np.float64, BF16, np.float16]:
        a, b = np.zeros(3, dt), np.zeros(3, dt)
        assert V.storage_dtype("f()", x=a, weight=b, bias=None, optional=("bias",)) == dt
    assert V.storage_kind(BF16) == 1 and V.storage_kind(np.dtype(np.float16)) == 2
    assert V.storage_kind(np.dtype(np.float32)) == 0
    assert V.compute_dtype(BF16) == np.float32 and V.compute_dtype(np.dtype(np.float64)) == np.float64


@pytest.mark.parametrize("a,b", [(BF16, np.float32), (np.float16, BF16), (np.float32, np.float16),
                                 (BF16, np.float64)])
def test_storage_dtype_refuses_mixing(a, b):
    with pytest.raises(TypeError, match=r"f\(\): weight has dtype .* but x has dtype .*one dtype"):
        V.storage_dtype("f()", x=np.zeros(2, a), weight=np.zeros(2, b))


def test_storage_dtype_refuses_other_dtypes():
    for dt in [np.int16, np.uint16, np.complex64, object, ml_dtypes.float8_e4m3fn]:
        with pytest.raises(TypeError, match=r"f\(\): x has dtype .*; expected float32, float64, "
                                            r"bfloat16 \(ml_dtypes\) or float16"):
            V.storage_dtype("f()", x=np.zeros(2, dt))


def test_float_dtype_says_16_bit_is_not_taken_here():
    with pytest.raises(TypeError, match="does not take 16-bit storage"):
        V.float_dtype("f()", x=np.zeros(2, BF16))


def test_bfloat16_without_ml_dtypes_names_the_extra(monkeypatch):
    x = np.zeros(3, BF16)
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)     # as if not installed
    with pytest.raises(TypeError, match=r'x has dtype bfloat16, which needs ml_dtypes, not '
                                        r'installed.*pip install "mlkernels\[bf16\]"'):
        V.storage_dtype("f()", x=x)
    assert V.bfloat16() is None


def test_import_without_ml_dtypes():
    code = ("import sys; sys.modules['ml_dtypes'] = None\n"
            "import numpy as np, mlkernels\n"
            "assert 'ml_dtypes' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "print(mlkernels.relu(np.array([-1.0, 2.0], np.float32)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=NEUTRAL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0. 2.]"


def test_import_does_not_import_ml_dtypes():
    code = "import sys, mlkernels; print('ml_dtypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=NEUTRAL)
    assert out.stdout.strip() == "False"
