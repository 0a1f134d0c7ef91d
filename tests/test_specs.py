"""Every row of the kernel spec table: fast kernel vs reference, on every shape, both
dtypes and every ISA variant; and its finite-difference gradient check."""
import numpy as np
import pytest

from mlkernels.specs import SPECS
from mlkernels.testing import assert_close, copy_args

pytestmark = pytest.mark.usefixtures("isa")

ROWS = sorted(SPECS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ROWS)
def test_matches_reference(name, dtype):
    spec = SPECS[name]
    for i, shape in enumerate(spec.shapes):
        rng = np.random.default_rng(i)
        args, kwargs = spec.make_args(rng, np.dtype(dtype), shape)
        copies = copy_args(args)
        got = spec.results(spec.fast(*args, **kwargs))
        want = spec.results(spec.reference(*copies, **kwargs))
        scales = spec.scale(args, kwargs) if spec.scale else [None] * len(want)
        assert len(got) == len(want), f"{name}: {len(got)} outputs, reference has {len(want)}"
        for j, (g, w, s) in enumerate(zip(got, want, scales)):
            # arrays, or NumPy scalars for reduced losses; always of the input dtype
            assert isinstance(g, (np.ndarray, np.generic)) and g.dtype == dtype, (name, j, type(g))
            assert_close(g, w, dtype, scale=s, err_msg=f"{name} output {j}, shape {shape}")


@pytest.mark.parametrize("name", [n for n in ROWS if SPECS[n].gradcheck is not None])
def test_gradcheck(name):
    SPECS[name].gradcheck(np.random.default_rng(0))


def test_every_backward_has_a_gradcheck():
    for name, spec in SPECS.items():
        if spec.backward_of is not None:
            assert spec.gradcheck is not None, f"{name} has no finite-difference check"
            assert spec.backward_of in SPECS, f"{name}: forward {spec.backward_of} has no row"
