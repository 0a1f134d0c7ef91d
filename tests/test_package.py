"""The package around the kernels: ISA dispatch, threads, info, the command line, testing
helpers."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import mlkernels as mk
from mlkernels import _dispatch
from mlkernels.testing import GradcheckError, assert_close, gradcheck


# Subprocesses start in a neutral folder: from the repository root, the source tree (with no
# compiled kernels in it) would shadow the installed package.
NEUTRAL = tempfile.mkdtemp(prefix="mlkernels-neutral-")   # empty: no stray module there


def run_python(code, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=120, cwd=NEUTRAL)


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mlkernels", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=NEUTRAL)


def test_best_isa_is_default_and_every_variant_is_selectable():
    assert mk.active_isa() == mk.available_isas[-1] or os.environ.get("MLKERNELS_ISA")
    for isa in mk.available_isas:
        r = run_python("import mlkernels; print(mlkernels.active_isa())", MLKERNELS_ISA=isa)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == isa


def test_impossible_isa_request_is_an_import_error():
    r = run_python("import mlkernels", MLKERNELS_ISA="sse9")
    assert r.returncode != 0 and "ImportError" in r.stderr and "MLKERNELS_ISA" in r.stderr
    missing = [i for i in _dispatch.ISAS if i not in mk.available_isas]
    if missing:
        r = run_python("import mlkernels", MLKERNELS_ISA=missing[0])
        assert r.returncode != 0 and "ImportError" in r.stderr


def test_use_isa_switches_and_refuses_unknown():
    before = mk.active_isa()
    with _dispatch.isa("baseline"):
        assert mk.active_isa() == "baseline"
        assert mk.linear(np.ones((2, 2)), np.ones((1, 2)))[0, 0] == 2
    assert mk.active_isa() == before
    with pytest.raises(ValueError, match="not available"):
        _dispatch.use_isa("avx1024")


def test_threads_api():
    n = mk.get_num_threads()
    assert n >= 1
    with mk.threads(1):
        assert mk.get_num_threads() == 1
    assert mk.get_num_threads() == n
    mk.set_num_threads(3)
    try:
        assert mk.get_num_threads() == 3
    finally:
        mk.set_num_threads(n)
    for bad, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc):
            mk.set_num_threads(bad)


def test_omp_num_threads_respected():
    r = run_python("import mlkernels; print(mlkernels.get_num_threads())", OMP_NUM_THREADS="1")
    assert r.stdout.strip() == "1", r.stderr


def test_info():
    info = mk.info()
    for key in ("version", "isa", "isas_available", "num_threads", "blas", "openmp"):
        assert key in info
    assert info["isa"] in info["isas_available"]
    assert info["version"] == mk.__version__


def test_cli_info_check_bench(tmp_path):
    r = run_cli("info")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == mk.__version__
    r = run_cli("check", "--family", "linear")
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--family", "linear", "--samples", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {row["impl"] for row in rows} >= {"mlkernels", "numpy x@W.T+b"}
    assert all(row["seconds"] > 0 for row in rows)
    r = run_cli("bench", "--family", "nope")
    assert r.returncode != 0 and "invalid choice: 'nope'" in r.stderr


def test_cli_help_version_and_early_errors(tmp_path):
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mlkernels {mk.__version__}"
    r = run_cli("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: mlkernels")
    r = run_cli("bench", "--help")
    assert r.returncode == 0 and all(f in r.stdout for f in ("activations", "train", "calls"))
    # a --json or --plot that cannot be written fails at once, not after the run
    for args in (("bench", "--family", "train", "--json", str(tmp_path / "no" / "r.json")),
                 ("demo", "--plot", str(tmp_path / "no" / "p.png"))):
        r = run_cli(*args, timeout=30)
        assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_info_into_a_closed_pipe_is_quiet():
    r = subprocess.run(f"{sys.executable} -m mlkernels info | head -n 1", shell=True,
                       capture_output=True, text=True, timeout=120, cwd=NEUTRAL)
    assert r.returncode == 0 and r.stdout.strip() == "{" and "Traceback" not in r.stderr


def test_info_names_the_blas_without_threadpoolctl():
    r = run_python("import sys; sys.modules['threadpoolctl'] = None\n"
                   "import json, mlkernels; print(json.dumps(mlkernels.info()['blas']))")
    assert r.returncode == 0, r.stderr
    blas = json.loads(r.stdout)
    assert blas["name"] not in (None, "unknown") and blas["source"] == "scipy build config"


def test_the_source_tree_without_kernels_says_what_to_do(tmp_path):
    import shutil
    import pathlib
    tree = tmp_path / "mlkernels"
    shutil.copytree(pathlib.Path(mk.__file__).parent, tree,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "_isa_*", "__pycache__"))
    r = subprocess.run([sys.executable, "-c", "import mlkernels"], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0
    assert "source tree" in r.stderr and "pip install -e ." in r.stderr
    assert "During handling" not in r.stderr        # one clear error, no chained traceback


def test_assert_close_catches_differences():
    assert_close(np.float32([1, np.nan, np.inf]), [1, np.nan, np.inf])
    for bad in ([1.001, np.nan, np.inf], [1, 0, np.inf], [1, np.nan, -np.inf]):
        with pytest.raises(AssertionError):
            assert_close(np.float32([1, np.nan, np.inf]), bad)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.zeros(2), np.zeros(3))


def test_gradcheck_catches_a_wrong_gradient():
    x = np.linspace(-1, 1, 5)
    assert gradcheck(np.sin, lambda r, x: (r * np.cos(x),), (x,), (0,))
    with pytest.raises(GradcheckError, match="argument 0"):
        gradcheck(np.sin, lambda r, x: (r * np.cos(x) * 1.001,), (x,), (0,))


def test_readme_api_tour_runs(tmp_path, monkeypatch):
    """The README's API tour is run as written, in an empty folder that it leaves empty, and
    shows how to resume from a saved state (issue 14)."""
    import pathlib
    import re
    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not next to the tests (an installed test tree)")
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    tour = [b for b in blocks if "mk.linear(" in b]
    assert tour, "the README lost its API tour"
    monkeypatch.chdir(tmp_path)
    assert "load_state_dict" in tour[0], "the tour does not show how to resume"
    exec(compile(tour[0], str(readme), "exec"), {"__name__": "readme_tour"})
    assert not list(tmp_path.iterdir()), "the tour left files in the user's folder"
