# The thread runtime (mlkernels/_runtime.pyx, C in _runtime.h), for kernel modules to cimport.
# Its state is one per process: these are calls into the _runtime module, never copies of it.

cdef int kernel_threads() noexcept nogil         # the threads a kernel called from here may use
cdef void blas_single_thread() noexcept nogil     # OpenBLAS: one thread per call (ours)

# Output sizes (bytes) from which kernels write with streaming stores (_stream.h): one value
# for the whole process, every module and ISA variant (set_stream_from() in _runtime.pyx
# changes it: the tests stream everything, to drive those paths with small arrays).
cdef Py_ssize_t stream_from() noexcept nogil

# Thread thresholds, in elements: below them a kernel runs on the calling thread and opens no
# OpenMP region (opening one costs microseconds, more than a small input's whole work).
cdef enum:
    SERIAL_BELOW_MEMORY_BOUND = 262144   # loops that move memory and compute little (relu):
    #                                      a second thread pays off late
    SERIAL_BELOW_COMPUTE_BOUND = 32768   # loops with exp, erf, tanh or a division per element
    SERIAL_BELOW_NORM = 65536            # the norms (rows or channels read twice, from cache)
