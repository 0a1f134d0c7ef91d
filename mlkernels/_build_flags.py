"""The compiler flags and Cython directives of the kernel build, in one place.

setup.py builds with these tables, and the vectorization report (``_vecreport.py``) compiles
the same C with them, so the report sees the loops the build makes. This file is loaded by
path (it imports nothing from mlkernels): setup.py runs before the package is built.
See setup.py for what each ISA variant is and why these flags, and no others.
"""
from pathlib import Path

ISA_FLAGS_GCC = {
    "baseline": [],
    "avx2": ["-march=x86-64-v3"],
    "avx512": ["-march=x86-64-v4", "-mprefer-vector-width=512"],
}
ISA_FLAGS_MSVC = {"baseline": [], "avx2": ["/arch:AVX2"], "avx512": ["/arch:AVX512"]}

COMMON_GCC = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
              "-Wno-unused-function", "-Wno-unreachable-code",
              # C code that no C++ exception or forced unwinding ever crosses needs no unwind
              # tables, and the package is smaller without them (docs/design.md, "Size")
              "-fno-asynchronous-unwind-tables"]
COMMON_MSVC = ["/O2"]
OPENMP_GCC = ["-fopenmp"]
OPENMP_MSVC = ["/openmp"]
DEFINES = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
CYTHON_DIRECTIVES = {
    "language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True,
    "initializedcheck": False, "nonecheck": False, "embedsignature": True,
    # the modules' def functions are private entries called by the Python API, never methods
    # or introspected: plain builtin functions, without the CyFunction machinery (its code
    # would be repeated in every module and variant; docs/design.md, "Size")
    "binding": False,
}

# Not kernel modules: built once, with the baseline flags (the CPU probe; the thread runtime
# and the argument checks where they are compiled). Every other _*.pyx is a kernel module,
# built once per ISA variant.
ONCE_MODULES = ("_cpu", "_runtime", "_validate")


def kernel_modules(package_dir):
    """The kernel modules (``_<family>``, one per .pyx) of the package in package_dir."""
    return sorted(p.stem for p in Path(package_dir).glob("_*.pyx") if p.stem not in ONCE_MODULES)
