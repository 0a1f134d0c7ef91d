"""Shared fixtures.

``isa``: a test that uses it (directly, or through ``pytestmark =
pytest.mark.usefixtures("isa")``) runs once per ISA variant this machine can run
(baseline, avx2, avx512), with the kernels switched to that variant.
``stream_everything``: the kernels that stream large outputs (_stream.h, from 16 MiB) stream
every output, so that small test arrays take that path; per ISA variant.
``off_line``: an empty array whose data starts one element past a 64-byte cache line.
"""
import numpy as np
import pytest
from hypothesis import settings


import mlkernels
from mlkernels import _dispatch, _runtime


# `pytest --hypothesis-profile=long`: every property test runs 50x its examples. The tests
# set their own counts (@settings(max_examples=n * LONG)), which a profile cannot override,
# so each reads LONG = 50 from this profile's marker value of max_examples (>= 5000).
settings.register_profile("long", max_examples=5000, deadline=None)


def pytest_generate_tests(metafunc):
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", list(_dispatch.available_isas), indirect=True)


@pytest.fixture
def isa(request):
    with _dispatch.isa(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


DTYPES = [np.float32, np.float64]


def pytest_report_header(config):
    info = mlkernels.info()
    return (f"mlkernels {info['version']}: ISA variants {info['isas_available']}, "
            f"OpenMP {info['openmp']}, {info['num_threads']} threads, BLAS {info['blas']}")


@pytest.fixture
def stream_everything(isa):
    old = _runtime.set_stream_from(0)          # one setting for every kernel module
    yield
    _runtime.set_stream_from(old)


@pytest.fixture
def off_line():
    def make(shape, dtype, fill=np.nan):
        dtype = np.dtype(dtype)
        size = int(np.prod(shape))
        buf = np.full(size + 64 // dtype.itemsize + 1, fill, dtype)
        skip = (-buf.ctypes.data % 64) // dtype.itemsize + 1
        return buf[skip:skip + size].reshape(shape)
    return make
