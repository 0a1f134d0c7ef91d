"""Activations: mlkernels vs the NumPy/SciPy compositions (and PyTorch when installed)."""
FAMILY = "activations"


def test_activations(run_bench, bench_case):
    run_bench(bench_case)
