"""Build: the extension list, the compiler flags and the ISA variants -- nothing else.

Every kernel module ``mlkernels/_<family>.pyx`` is translated to C once and the C file
is compiled once per ISA variant into ``mlkernels/_isa_<variant>/_<family>``:

* ``baseline``: the compiler's default x86-64 (or other architecture) target;
* ``avx2``:     x86-64-v3 (AVX2 + FMA + BMI2, Haswell and later);
* ``avx512``:   x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), 512-bit vectors preferred.

``mlkernels/_dispatch.py`` picks the best variant the CPU runs at import time.
Only the baseline is built on non-x86 machines or for compilers without these flags.
Flags: -O3 -fno-math-errno -fno-trapping-math (what vectorizing sqrt/floor/cvt needs),
-fopenmp-simd (the ``omp simd reduction`` loops of _reduce.h, also in a serial build) and
nothing more: no fast-math flag of any kind (it breaks NaN/Inf semantics) and no tuning for
the build machine's own CPU (binaries must be portable; the ISA variants cover the rest).

MLKERNELS_ISAS=avx512 (a comma-separated subset of the variants) builds only those: a faster
build while developing; the tests then run on the variants built.
MLKERNELS_SANITIZE=address,undefined builds the kernels with those sanitizers (see
.ci/sanitize, which runs the test suite against such a build). MLKERNELS_NO_OPENMP=1 builds
serial kernels.
"""
import importlib.util
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
# The flag tables live in mlkernels/_build_flags.py, which the vectorization report
# (mlkernels/_vecreport.py) reads too; loaded by path, as the package is not built yet.
_spec = importlib.util.spec_from_file_location("_build_flags",
                                               HERE / "mlkernels" / "_build_flags.py")
flags = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flags)
# Built once, with the baseline flags (the CPU probe, the thread runtime whose state must be one
# per process, the argument checks); every other _*.pyx is a kernel module, once per variant.
ONCE_MODULES = list(flags.ONCE_MODULES)
KERNEL_MODULES = flags.kernel_modules(HERE / "mlkernels")

IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")
ISA_FLAGS_GCC, ISA_FLAGS_MSVC = flags.ISA_FLAGS_GCC, flags.ISA_FLAGS_MSVC
VARIANTS = list(ISA_FLAGS_GCC) if IS_X86_64 else ["baseline"]
if os.environ.get("MLKERNELS_ISAS"):  # a development build of fewer variants
    VARIANTS = [v for v in VARIANTS if v in os.environ["MLKERNELS_ISAS"].split(",")] or VARIANTS[:1]

COMMON_GCC, COMMON_MSVC = flags.COMMON_GCC, flags.COMMON_MSVC
DEFINES, CYTHON_DIRECTIVES = flags.DEFINES, flags.CYTHON_DIRECTIVES


class build_ext_isa(build_ext):
    """Per-compiler flags: OpenMP when the compiler has it, ISA flags per variant."""

    def _compiles(self, flags, link=True):
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "probe.c"
            src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n"
                           if "-fopenmp" in flags or "/openmp" in flags else "int main(void){return 0;}\n")
            try:
                objs = self.compiler.compile([str(src)], output_dir=tmp, extra_postargs=flags)
                if link:
                    self.compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
            except Exception:
                return False
        return True

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        common, isa_flags = (COMMON_MSVC, ISA_FLAGS_MSVC) if msvc else (COMMON_GCC, ISA_FLAGS_GCC)
        omp = flags.OPENMP_MSVC if msvc else flags.OPENMP_GCC
        have_omp = os.environ.get("MLKERNELS_NO_OPENMP") != "1" and self._compiles(omp)
        if not have_omp:
            print("mlkernels: no OpenMP in this compiler; building serial kernels", file=sys.stderr)
        usable = {isa for isa in VARIANTS if self._compiles(isa_flags[isa], link=False)}
        for isa in sorted(set(VARIANTS) - usable):
            print(f"mlkernels: the compiler cannot target {isa}; variant skipped", file=sys.stderr)
        self.extensions = [e for e in self.extensions if e.isa is None or e.isa in usable]
        sanitize = [f"-fsanitize={s}" for s in os.environ.get("MLKERNELS_SANITIZE", "").split(",") if s]
        if sanitize and not msvc:
            common = common + sanitize + ["-fno-omit-frame-pointer", "-g"]
        for ext in self.extensions:
            # the modules built once (isa None) get no ISA flags: they must load on every CPU
            ext.extra_compile_args = common + isa_flags.get(ext.isa, []) + (omp if have_omp else [])
            # release builds carry no debug information (-g0; -s strips the symbol table too):
            # the package installs at a fraction of its size (the sanitized build keeps -g)
            strip = [] if msvc or sanitize else ["-g0"]
            ext.extra_compile_args += strip
            ext.extra_link_args = ((omp if have_omp and not msvc else []) + (sanitize if not msvc else [])
                                   + ([] if msvc or sanitize or sys.platform == "darwin" else ["-s"]))
        super().build_extensions()

    def copy_extensions_to_source(self):
        # editable installs copy each extension next to its source: make the variant folders
        for isa in VARIANTS:
            (HERE / "mlkernels" / f"_isa_{isa}").mkdir(exist_ok=True)
        super().copy_extensions_to_source()


def extensions():
    include = [numpy.get_include(), str(HERE / "mlkernels")]
    # 1. Cython -> C, once per module (the C does not depend on the ISA).
    generated = cythonize(
        [Extension(f"mlkernels.{m}", [f"mlkernels/{m}.pyx"]) for m in ONCE_MODULES + KERNEL_MODULES],
        compiler_directives=CYTHON_DIRECTIVES, include_path=["mlkernels"], nthreads=2)
    c_file = {e.name.rsplit(".", 1)[1]: e.sources[0] for e in generated}
    headers = sorted(str(p.relative_to(HERE)) for p in (HERE / "mlkernels").glob("*.[hp]xd")) + \
        sorted(str(p.relative_to(HERE)) for p in (HERE / "mlkernels").glob("*.h"))
    depends = {m: [c_file[m]] + headers for m in c_file}  # rebuild a stub when its C changes
    # 2. C -> one shared object per (variant, module).  Each variant compiles a tiny
    #    per-variant stub that #includes the shared C file, so that the object files of
    #    different variants never collide (and parallel builds stay safe).
    stub_dir = HERE / "build" / "isa_stubs"
    exts = []
    for module in ONCE_MODULES:
        once = Extension(f"mlkernels.{module}", [c_file[module]], include_dirs=include,
                         define_macros=DEFINES, depends=depends[module])
        once.isa = None  # no ISA flags: it must load on every CPU
        exts.append(once)
    for isa in VARIANTS:
        for module in KERNEL_MODULES:
            stub = stub_dir / isa / f"{module}.c"
            stub.parent.mkdir(parents=True, exist_ok=True)
            text = f'/* {isa} variant of {module} */\n#include "{Path(c_file[module]).resolve().as_posix()}"\n'
            if not stub.exists() or stub.read_text() != text:
                stub.write_text(text)
            ext = Extension(f"mlkernels._isa_{isa}.{module}", [str(stub.relative_to(HERE))],
                            include_dirs=include, define_macros=DEFINES, depends=depends[module])
            ext.isa = isa
            exts.append(ext)
    return exts


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext_isa},
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
)
