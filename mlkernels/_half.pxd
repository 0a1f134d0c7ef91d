"""16-bit storage (bfloat16, float16): the C of _half.h, which says how values are widened to
float32 and rounded back (to nearest even, once), by which path, and why."""
from libc.stdint cimport uint16_t, uint32_t

cdef extern from "_half.h" nogil:
    enum:
        MLK_NATIVE      # float32/float64 arrays: no conversion
        MLK_BF16
        MLK_F16
    uint32_t mlk_float_bits(float f)
    float mlk_bf16_widen(uint16_t h)
    uint16_t mlk_bf16_round(float f)
    float mlk_f16_widen(uint16_t h)
    uint16_t mlk_f16_round(float f)
    void mlk_widen(int kind, const uint16_t* src, float* dst, Py_ssize_t n)
    void mlk_narrow(int kind, const float* src, uint16_t* dst, Py_ssize_t n)
    void mlk_narrow_stream(int kind, const float* src, uint16_t* dst, Py_ssize_t n)
    void mlk_narrow_to(int kind, const float* src, uint16_t* dst, Py_ssize_t n, bint stream)
    void mlk_widen_bf16_portable(const uint16_t* src, float* dst, Py_ssize_t n)
    void mlk_narrow_bf16_portable(const float* src, uint16_t* dst, Py_ssize_t n)
    void mlk_widen_f16_portable(const uint16_t* src, float* dst, Py_ssize_t n)
    void mlk_narrow_f16_portable(const float* src, uint16_t* dst, Py_ssize_t n)
    int mlk_bf16_uses_hardware()
    int mlk_f16_uses_hardware()
