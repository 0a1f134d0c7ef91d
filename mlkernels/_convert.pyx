"""float32 <-> bfloat16 / float16 conversion of whole arrays (the row functions of _half.h).

For the tests (every path against ml_dtypes' and NumPy's conversions, bit for bit) and for
the thin APIs that need a 16-bit array as float32 once (a weight, a bias). The arrays are
validated by the caller: C-contiguous, of the sizes given, 16-bit storage seen as uint16.
"""
from libc.stdint cimport uint16_t
cimport numpy as cnp

from mlkernels._half cimport (MLK_BF16, MLK_F16, mlk_widen, mlk_narrow,
                              mlk_widen_bf16_portable, mlk_narrow_bf16_portable,
                              mlk_widen_f16_portable, mlk_narrow_f16_portable,
                              mlk_bf16_uses_hardware, mlk_f16_uses_hardware)

cnp.import_array()


def widen(cnp.ndarray src, cnp.ndarray dst, int kind, bint portable=False):
    """dst (float32) = src (16-bit storage of `kind`: 1 bfloat16, 2 float16) widened."""
    cdef const uint16_t* s = <const uint16_t*>cnp.PyArray_DATA(src)
    cdef float* d = <float*>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(src)
    with nogil:
        if not portable:
            mlk_widen(kind, s, d, n)
        elif kind == MLK_BF16:
            mlk_widen_bf16_portable(s, d, n)
        else:
            mlk_widen_f16_portable(s, d, n)


def narrow(cnp.ndarray src, cnp.ndarray dst, int kind, bint portable=False):
    """dst (16-bit storage of `kind`) = src (float32) rounded to nearest even."""
    cdef const float* s = <const float*>cnp.PyArray_DATA(src)
    cdef uint16_t* d = <uint16_t*>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(src)
    with nogil:
        if not portable:
            mlk_narrow(kind, s, d, n)
        elif kind == MLK_BF16:
            mlk_narrow_bf16_portable(s, d, n)
        else:
            mlk_narrow_f16_portable(s, d, n)


def paths():
    """Which path this variant rounds with: {"bfloat16": ..., "float16": ...}."""
    return {"bfloat16": "avx512bf16" if mlk_bf16_uses_hardware() else "portable",
            "float16": "f16c" if mlk_f16_uses_hardware() else "portable"}
