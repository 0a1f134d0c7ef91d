"""Linear layer: mlkernels vs NumPy (and PyTorch when installed), same inputs."""
FAMILY = "linear"


def test_linear(run_bench, bench_case):
    run_bench(bench_case)
