"""The activation family is generated from one table (mlkernels/_activation_table.py) by
mlkernels/_generate.py: the committed files must be what the table and the templates give now,
and the table must hold together (every row has its reference, the codes agree)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    """mlkernels/_generate.py of this checkout, loaded by path (it imports nothing from the
    package; the installed package has neither it nor the templates)."""
    spec = importlib.util.spec_from_file_location("_generate_checkout",
                                                  ROOT / "mlkernels" / "_generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate():
    pytest.importorskip("Cython.Tempita")
    if not (ROOT / "mlkernels" / "_activation_table.py").exists():
        pytest.skip("not a checkout of the repository")
    return _generator()


def test_generated_files_are_current(generate):
    stale = [target for target, text in generate.render(ROOT).items()
             if (ROOT / target).read_text() != text]
    assert not stale, (f"{stale} differ from what mlkernels/_activation_table.py and the "
                       f"templates give: run `python mlkernels/_generate.py` (never edit a "
                       f"generated file)")


def test_generated_files_say_so(generate):
    for template, target in generate.TARGETS:
        head = (ROOT / target).read_text().splitlines()[:2]
        assert "Generated from mlkernels/_activation_table.py" in head[0], target
        assert template in head[1] and "do not edit" in head[1], target


def test_check_mode_names_a_stale_file(generate, tmp_path, capsys):
    """--check fails (exit 1) and names the file when a generated file was edited by hand."""
    for rel in ["mlkernels", "mlkernels/specs"]:
        (tmp_path / rel).mkdir(parents=True, exist_ok=True)
    paths = {"mlkernels/_activation_table.py"}
    for template, target in generate.TARGETS:
        paths |= {template, target}
    for rel in paths:
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0
    edited = tmp_path / "mlkernels" / "_act.pxd"
    edited.write_text(edited.read_text().replace("y[i] = 0 if x[i] < 0 else x[i]",
                                                 "y[i] = x[i]"))
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    assert "mlkernels/_act.pxd" in capsys.readouterr().err


def test_one_list_of_operation_codes():
    """The codes of mlkernels.activations (from the table) are the ones linear takes, and every
    kernel of the table has a public function, an entry and a reference."""
    import importlib
    import mlkernels as mk
    from mlkernels import activations as A, reference as ref
    L = importlib.import_module("mlkernels.linear")   # (mlkernels.linear is the function)
    from mlkernels._dispatch import K
    from mlkernels.specs.activations import ACTIVATIONS, FUNCTIONS
    assert L.ACTIVATIONS == {name: code for name, (code, _, _) in A.FUSED_WITH_LINEAR.items()}
    kernels = [getattr(A, name.upper()) for name in A.FUSED_WITH_LINEAR]
    assert len(set(kernels)) == len(kernels)
    for name in FUNCTIONS:
        for suffix in ("", "_backward"):
            assert callable(getattr(mk, name + suffix)) and callable(getattr(ref, name + suffix))
    for spec_name, function, kwargs, kinks in ACTIVATIONS:
        kernel = spec_name.replace("[", "_").rstrip("]")
        assert hasattr(K._activations, kernel) and hasattr(K._activations, kernel + "_backward")
    for name in ("hardswish", "hardsigmoid", "mish"):
        assert name in FUNCTIONS
