"""Shared fixtures.

``isa``: a test that uses it (directly, or through ``pytestmark =
pytest.mark.usefixtures("isa")``) runs once per ISA variant this machine can run
(baseline, avx2, avx512), with the kernels switched to that variant.
"""
import numpy as np
import pytest
from hypothesis import settings


import mlkernels
from mlkernels import _dispatch


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
