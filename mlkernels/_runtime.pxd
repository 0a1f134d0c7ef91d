# The thread runtime (mlkernels/_runtime.pyx, C in _runtime.h), for kernel modules to cimport.
# Its state is one per process: these are calls into the _runtime module, never copies of it.

cdef int kernel_threads() noexcept nogil         # the threads a kernel called from here may use
cdef void blas_single_thread() noexcept nogil     # OpenBLAS: one thread per call (ours)
