# The thread runtime: one OpenMP team for our kernels and for the BLAS they call, the thread
# count every kernel asks for, and fork safety. The C and the reasons are in _runtime.h; the
# Python side (set_num_threads, threads(n), the wait policy) is mlkernels/_threads.py.
# Built once, with the baseline flags (like _cpu): its state must be one per process, shared
# by every ISA variant of the kernels.
from scipy.linalg.cython_blas cimport sgemm

from mlkernels._stream cimport STREAM_FROM_BYTES

cdef extern from "_runtime.h" nogil:
    int mlk_default_threads
    int mlk_process_threads
    int mlk_local_threads
    int mlk_forked_child
    int mlk_blas_shared
    long mlk_blas_jobs_on_team
    long mlk_blas_jobs_on_pthreads
    int mlk_threads()
    void mlk_blas_single_thread()
    int mlk_blas_threads_before
    int mlk_omp_max_threads()
    void mlk_set_process_threads(int n)
    int mlk_blas_locate(void* blas_function)
    int mlk_blas_share(int on)
    int mlk_install_fork_handler()
    const char* mlk_openmp_library()
    ctypedef int (*mlk_get_int_fn)()
    mlk_get_int_fn mlk_blas_get_threads


cdef int kernel_threads() noexcept nogil:
    return mlk_threads()


cdef void blas_single_thread() noexcept nogil:
    mlk_blas_single_thread()


cdef Py_ssize_t stream_from_bytes = STREAM_FROM_BYTES


cdef Py_ssize_t stream_from() noexcept nogil:
    return stream_from_bytes


def set_stream_from(Py_ssize_t nbytes):
    """Set the output size (bytes) from which every kernel streams its output (_stream.h);
    returns the old value. One setting for every kernel module and ISA variant: for tests
    (to drive the streaming paths with small arrays) and measurements."""
    global stream_from_bytes
    old, stream_from_bytes = stream_from_bytes, nbytes
    return old


def num_threads():
    """The number of threads a kernel called from this Python thread may use."""
    return mlk_threads()


def set_default_threads(int n):
    """The count used when neither set_num_threads() nor threads(n) says otherwise."""
    global mlk_default_threads
    mlk_default_threads = max(1, n)
    mlk_set_process_threads(mlk_process_threads)    # every thread adopts it


def set_process_threads(int n):
    """set_num_threads(n) for the whole process (0: back to the default)."""
    mlk_set_process_threads(n)


def local_threads():
    """threads(n) in effect in this Python thread (0: none)."""
    return mlk_local_threads


def set_local_threads(int n):
    """Set threads(n) for this Python thread (0: none); returns the previous value."""
    global mlk_local_threads
    old, mlk_local_threads = mlk_local_threads, n
    return old


def openmp_max_threads():
    """omp_get_max_threads() in this thread (1 without OpenMP)."""
    return mlk_omp_max_threads()


def openmp_library():
    """The path of the OpenMP runtime library the kernels use ("" without OpenMP)."""
    return mlk_openmp_library().decode()


def forked_child():
    """Whether this process is a child forked from a process that imported mlkernels."""
    return bool(mlk_forked_child)


def blas_share(bint on):
    """Run SciPy's OpenBLAS jobs on our OpenMP team (on=True), or give OpenBLAS its own pool
    back. Returns whether OpenBLAS has the callback API (0.3.27+)."""
    return bool(mlk_blas_share(on))


def blas_state():
    """What the BLAS sharing does: found, on, OpenBLAS's thread count, and how many parallel
    OpenBLAS calls ran on our team and on fallback pthreads."""
    return {"callback_found": mlk_blas_get_threads != NULL,
            "shared": bool(mlk_blas_shared),
            "blas_threads": mlk_blas_get_threads() if mlk_blas_get_threads != NULL else None,
            "blas_threads_before": mlk_blas_threads_before or None,
            "jobs_on_team": mlk_blas_jobs_on_team,
            "jobs_on_pthreads": mlk_blas_jobs_on_pthreads}


mlk_blas_locate(<void*>sgemm)
mlk_install_fork_handler()
