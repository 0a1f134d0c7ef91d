"""The vectorization guard (mlkernels/_vecreport.py, docs/vectorization.md) can fail.

tests/vecguard_fixture.pyx (and the C macro loops of vecguard_fixture.h) hold marked loops
GCC vectorizes and marked loops it cannot (a libm call, a serial reduction, a float64
instance calling libm); the report, run on that module alone through its own machinery
(Cython, the build's flags for avx2 and avx512, GCC's vectorizer dump), must tell them apart,
give GCC's reason for the scalar ones, and make `--check` fail on them.
"""
import platform
from pathlib import Path

import pytest

from mlkernels import _vecreport

HERE = Path(__file__).parent
FIXTURE = HERE / "vecguard_fixture.pyx"
ISAS = ("avx2", "avx512")


@pytest.fixture(scope="module")
def report():
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the avx2/avx512 variants exist on x86-64 only")
    if not _vecreport.cython_available():
        pytest.skip("Cython is not installed (it comes with the test extra)")
    try:
        _vecreport.compiler()
    except _vecreport.ReportError as e:
        pytest.skip(str(e))
    return _vecreport.analyse(modules=[FIXTURE], isas=ISAS)


def line_of(path, needle):
    lines = path.read_text().splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if needle in text]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def results(report, path, needle):
    """type -> isa -> LoopResult of the marked loop on the line after `needle` (pyx: the
    loop precedes its commented body line) or on the line of `needle` (C)."""
    line = line_of(path, needle)
    marker = next(m for m in report.markers if m.path == path and m.line in (line, line - 1))
    return marker, report.results(marker)


def test_finds_every_marker(report):
    found = {(m.path.name, m.line) for m in report.markers}
    assert sum(1 for name, _ in found if name == "vecguard_fixture.pyx") == 6
    assert sum(1 for name, _ in found if name == "vecguard_fixture.h") == 2
    # the package's own markers are not reported: none of its modules was compiled here
    assert not [m for m in report.markers if m.path.parent != HERE]


def test_good_loop_is_vectorized(report):
    _, res = results(report, FIXTURE, "# GOOD: branchless")
    (per_isa,) = res.values()
    assert per_isa["avx2"].ok and per_isa["avx2"].width == 32
    assert per_isa["avx512"].ok and per_isa["avx512"].width == 64


def test_libm_loop_is_not_vectorized(report):
    marker, res = results(report, FIXTURE, "# BAD: a libm call")
    for isa in ISAS:
        r = res[None][isa]
        assert r.copies and not r.ok
        assert "expf" in r.why()          # GCC's reason names the call
    failures = "\n".join(report.failures())
    assert f"vecguard_fixture.pyx:{marker.line}: all types, avx2: not vectorized" in failures
    assert f"vecguard_fixture.pyx:{marker.line}: all types, avx512: not vectorized" in failures


def test_serial_reduction_is_caught(report):
    # GCC says "loop vectorized" for an in-order (fold-left) float sum: vector loads, serial
    # adds. The report must still call it scalar.
    marker, res = results(report, FIXTURE, "# BAD: a serial float reduction")
    for isa in ISAS:
        r = res[None][isa]
        assert not r.ok
        assert "in-order" in r.why()
    assert any(f"vecguard_fixture.pyx:{marker.line}:" in f for f in report.failures())


def test_float32_marker_requires_float32_only(report):
    marker, res = results(report, FIXTURE, "# float32 required (GOOD)")
    assert marker.only == "float32"
    assert all(res["float32"][isa].ok for isa in ISAS)
    assert not any(res["float64"][isa].ok for isa in ISAS)       # libm exp: scalar
    assert "exp" in res["float64"]["avx512"].why()
    assert not any(f"vecguard_fixture.pyx:{marker.line}:" in f for f in report.failures())


def test_plain_marker_requires_every_type(report):
    marker, res = results(report, FIXTURE, "# both required: float64 (BAD)")
    assert all(res["float32"][isa].ok for isa in ISAS)
    failures = [f for f in report.failures() if f"vecguard_fixture.pyx:{marker.line}:" in f]
    assert len(failures) == 2 and all("float64" in f for f in failures)


def test_macro_loops_keep_their_lines(report):
    header = HERE / "vecguard_fixture.h"
    lines = header.read_text().splitlines()
    marked = [i + 1 for i, t in enumerate(lines) if "/* simd */" in t]
    good, bad = marked
    res_good, res_bad = (report.results(next(m for m in report.markers
                                             if m.path == header and m.line == line))
                         for line in (good, bad))
    assert set(res_good) == {"float32", "float64"} == set(res_bad)   # one instance per type
    assert all(res_good[t][isa].ok for t in res_good for isa in ISAS)
    assert not any(res_bad[t][isa].ok for t in res_bad for isa in ISAS)
    assert any(f"vecguard_fixture.h:{bad}: float32, avx512: not vectorized" in f
               for f in report.failures())


def test_misplaced_marker_is_an_error(report):
    line = line_of(FIXTURE, "cdef double total = 0  # simd")
    assert any(f"vecguard_fixture.pyx:{line}: the marker is not on a loop line" in f
               for f in report.failures())


def test_check_fails_and_names_the_loop(report, capsys, monkeypatch):
    monkeypatch.setattr(_vecreport, "analyse", lambda *a, **k: report)
    args = _vecreport.argparse.Namespace(
        package_dir=None, isa=list(ISAS), jobs=2, no_objdump=False, keep=None, check=True,
        unmarked=False)
    assert _vecreport.run(args) == 1
    err = capsys.readouterr().err
    assert "not vectorized" in err and "vecguard_fixture.pyx:" in err and "expf" in err


def test_instruction_counts_without_a_built_module(report):
    # the fixture has no built .so: the counts come from the report's own avx512 object
    assert "own avx512 object files" in report.objdump_note
    counts = report.objdump["vecguard_fixture"]
    run = next(c for sym, c in counts.items() if _vecreport.demangle(sym).endswith(".run"))
    assert run.packed["zmm"] > 0 and run.scalar > 0       # the vector loops and the libm loop


def test_objdump_classification():
    counts = _vecreport.Counts()
    for insn, ops in [("vfmadd231ps", "(%rax,%r8,1),%zmm17,%zmm4"),
                      ("vaddpd", "%ymm1,%ymm2,%ymm3"),
                      ("vaddss", "%xmm1,%xmm2,%xmm3"),
                      ("vmovsd", "(%rdi),%xmm0"),
                      ("vpcmpd", "$0x1,%zmm1,%zmm2,%k1"),           # integer: neither
                      ("vmovups", "(%rsi,%rax,4),%zmm0{%k1}{z}"),   # a masked load of data
                      ("vmovaps", "0x88(%rsp),%zmm2{%k1}"),         # a spill: not counted
                      ("vbroadcastss", "0x20a72(%rip),%ymm3{%k3}"),  # a constant: not counted
                      ("vmovups", "%zmm0,(%rax){%k1}")]:             # a masked store
        _vecreport.classify(insn, ops, counts)
    assert counts.packed == {"zmm": 4, "ymm": 2, "xmm": 0}
    assert counts.scalar == 2
    assert counts.masked_loads == 1


def test_demangle():
    d = _vecreport.demangle
    assert d("__pyx_fuse_0__pyx_f_9mlkernels_5_norm_row_forward") == "_norm.row_forward[float32]"
    assert (d("__pyx_fuse_1__pyx_f_9mlkernels_12_activations_forward_all._omp_fn.0")
            == "_activations.forward_all[float64] (OpenMP region 0)")
    assert d("mlk_sum_f32") == "mlk_sum_f32"
