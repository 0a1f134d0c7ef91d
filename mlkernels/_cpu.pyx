# What the CPU can run, asked once at import by mlkernels._dispatch.
# Built with the baseline flags only: it must load on every CPU.
# Built with the same OpenMP flag as the kernels, so that it can say whether they have it.

cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int mlk_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
            && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("sse4.2");
    }
    static int mlk_has_avx512(void) {
        __builtin_cpu_init();
        return mlk_has_avx2() && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }
    #else
    static int mlk_has_avx2(void) { return 0; }
    static int mlk_has_avx512(void) { return 0; }
    #endif
    """
    int mlk_has_avx2() nogil
    int mlk_has_avx512() nogil

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int mlk_openmp(void) { return 1; }
    static int mlk_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int mlk_openmp(void) { return 0; }
    static int mlk_omp_max_threads(void) { return 1; }
    #endif
    """
    int mlk_openmp() nogil
    int mlk_omp_max_threads() nogil


def supported_isas():
    """The ISA variants this CPU can run, from the lowest to the best."""
    isas = ["baseline"]
    if mlk_has_avx2():
        isas.append("avx2")
    if mlk_has_avx512():
        isas.append("avx512")
    return isas


def have_openmp():
    """Whether the kernels were compiled with OpenMP (else they run serially)."""
    return bool(mlk_openmp())


def openmp_max_threads():
    """omp_get_max_threads(): what OMP_NUM_THREADS (or the core count) gives; 1 without OpenMP."""
    return mlk_omp_max_threads()
