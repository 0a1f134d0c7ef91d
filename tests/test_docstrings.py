"""Every public function and class documents its parameters, results, errors and an example,
and every example runs (issue 14: `help()` shows a working example)."""
import doctest
import inspect
import sys

import numpy as np
import pytest

import mlkernels as mk
from mlkernels import distributed, nn, optim, testing

# Modules whose docstring examples are run (the package's own attributes shadow some module
# names -- mk.linear is the function -- so they are taken from sys.modules).
MODULES = ["mlkernels", "mlkernels.linear", "mlkernels.activations", "mlkernels.norm",
           "mlkernels.loss", "mlkernels.attention", "mlkernels.dropout", "mlkernels.embedding",
           "mlkernels.clip", "mlkernels.fused", "mlkernels.optim", "mlkernels.nn",
           "mlkernels.testing", "mlkernels._threads", "mlkernels._info", "mlkernels._dispatch",
           "mlkernels.distributed"]


#: functions that take no argument that could be wrong: no Raises section
RAISE_NOTHING = {"mk.info", "mk.get_num_threads", "mk.active_isa"}


def _public():
    """(name, object) of every public function and class of the API."""
    items = []
    for name in mk.__all__:
        obj = getattr(mk, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj) or callable(obj)) \
                and not inspect.ismodule(obj):
            items.append((f"mk.{name}", obj))
    items += [(f"optim.{n}", getattr(optim, n)) for n in optim.__all__]
    items += [(f"nn.{n}", getattr(nn, n)) for n in nn.__all__ if callable(getattr(nn, n))]
    items += [(f"distributed.{n}", getattr(distributed, n)) for n in distributed.__all__]
    items += [("testing.gradcheck", testing.gradcheck), ("testing.assert_close",
                                                        testing.assert_close)]
    return items


@pytest.mark.parametrize("name, obj", _public(), ids=[n for n, _ in _public()])
def test_public_docstrings_have_the_numpydoc_sections(name, obj):
    doc = inspect.getdoc(obj) or ""
    wanted = ["Examples"] + ([] if name in RAISE_NOTHING else ["Raises"])
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        sig = inspect.signature(obj)
        wanted += ["Parameters"] if sig.parameters else []
        wanted += [] if sig.return_annotation in (None, "None") else ["Returns"]  # (-> None)
    elif inspect.isclass(obj) and inspect.signature(obj).parameters:
        wanted += ["Parameters"]
    missing = [w for w in wanted if w not in doc]
    assert not missing, f"{name}'s docstring has no {', '.join(missing)} section"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # (an example may write a file)
    __import__(module)
    mod = sys.modules[module]
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(mod, module, globs={"np": np}) if t.examples]
    with np.errstate(all="raise"):
        for test in tests:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
