"""Checks on ndarrays in C, for the fast paths that skip the Python validation: a call whose
arrays all pass goes straight to the kernel; anything else takes the validated path of the
Python API, which names the problem (or copies the array into shape)."""
cimport numpy as cnp


cdef inline bint plain(cnp.ndarray a, int typenum):
    """C-contiguous, aligned, native byte order, of the given type: usable as raw memory."""
    return (cnp.PyArray_TYPE(a) == typenum
            and cnp.PyArray_CHKFLAGS(a, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)
            and cnp.PyArray_ISNOTSWAPPED(a))


cdef inline bint same_shape(cnp.ndarray a, cnp.ndarray b):
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) != cnp.PyArray_DIM(b, d):
            return False
    return True


cdef inline bint share_bytes(cnp.ndarray a, cnp.ndarray b):
    """Do two C-contiguous, non-empty arrays share any byte (np.may_share_memory's bounds
    test)? Two views of exactly the same memory do."""
    cdef char* pa = <char*>cnp.PyArray_DATA(a)
    cdef char* pb = <char*>cnp.PyArray_DATA(b)
    cdef Py_ssize_t na = cnp.PyArray_NBYTES(a), nb = cnp.PyArray_NBYTES(b)
    return na > 0 and nb > 0 and pa < pb + nb and pb < pa + na


cdef inline void* data_or_null(object a):
    """The data pointer of an ndarray (validated by the caller), NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline bint is_double(object a):
    """Whether a validated float array is float64 (else float32)."""
    return cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT64
