"""Generate the activation family from its table.

    python mlkernels/_generate.py            write the generated files
    python mlkernels/_generate.py --check    exit 1, naming them, if one is stale

The table is ``mlkernels/_activation_table.py`` (one row per kernel); the templates are the
``*.tp`` files beside their outputs, in Tempita (it ships with Cython, as
``Cython.Tempita``; scikit-learn builds ``sklearn/_loss/_loss.pyx`` the same way). This module
turns each row into the strings the templates place (declarations, argument lists, indented
loop bodies, docstrings); the templates hold the code around them.

The generated files are committed, each with a header saying where it comes from: readers
read the kernels in the repository, the vectorization report points at their lines, and the
build needs neither Tempita nor this script. ``tests/test_generated.py`` fails when one of
them differs from what the table and templates give now (edit the table or a template, then
run this script; never edit a generated file).

This module imports nothing from mlkernels: it runs on a tree that is not built.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

PACKAGE_DIR = Path(__file__).resolve().parent
TABLE = "mlkernels/_activation_table.py"
#: (template, output), relative to the repository root
TARGETS = [
    ("mlkernels/_act.pxd.tp", "mlkernels/_act.pxd"),
    ("mlkernels/_activations.pyx.tp", "mlkernels/_activations.pyx"),
    ("mlkernels/activations.py.tp", "mlkernels/activations.py"),
    ("mlkernels/specs/activations.py.tp", "mlkernels/specs/activations.py"),
]
WIDTH = 100             # the project's line length (pyproject.toml, ruff)


def load_table(package_dir: Path = PACKAGE_DIR):
    """The table module, loaded by path (the package may not be built)."""
    spec = importlib.util.spec_from_file_location("_activation_table",
                                                  package_dir / "_activation_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_activation_table"] = module      # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _indent(text: str, spaces: int) -> str:
    """text's lines, each indented by `spaces` (the first too)."""
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces)


def _fill(text: str, spaces: int, width: int = WIDTH - 8) -> str:
    """text as a paragraph, wrapped and indented (the first line too)."""
    pad = " " * spaces
    return textwrap.fill(" ".join(text.split()), width, initial_indent=pad,
                         subsequent_indent=pad)


def _comment(text: str, spaces: int) -> str:
    """text as # comment lines."""
    pad = " " * spaces
    return textwrap.fill(" ".join(text.split()), WIDTH - 4, initial_indent=pad + "# ",
                         subsequent_indent=pad + "# ")


def _wrap_call(head: str, args: List[str], tail: str) -> str:
    """head + args joined by commas + tail, wrapped at the line length with the arguments
    aligned after head."""
    lines, line = [], head
    for i, arg in enumerate(args):
        piece = arg + (tail if i == len(args) - 1 else ",")
        if len(line) + len(piece) + 1 > WIDTH and line.strip() != head.strip():
            lines.append(line.rstrip())
            line = " " * len(head)
        line += piece + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def wrap_list(head: str, items: Sequence[str], tail: str) -> str:
    """head + items joined by ", " + tail, wrapped at the line length (continuation lines
    aligned after head)."""
    return _wrap_call(head, list(items), tail)


def _dict(head: str, entries: Sequence[tuple], indent: int) -> str:
    """A dict display of (key, value source) pairs, one entry a line, a value that does not
    fit moved to a line of its own."""
    lines = []
    pad = " " * indent
    for i, (key, value) in enumerate(entries):
        first = pad + (head + "{" if i == 0 else " " * (len(head) + 1))
        end = "}" if i == len(entries) - 1 else ","
        line = f'{first}"{key}": {value}{end}'
        if len(line) > WIDTH:
            line = f'{first}"{key}":\n{" " * (indent + 8)}{value}{end}'
        lines.append(line)
    return "\n".join(lines)


def _literal(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


@dataclass
class Function:
    """A public function of mlkernels.activations and the kernels it calls (gelu: two)."""
    name: str
    kernels: List["Kernel"] = field(default_factory=list)

    @property
    def main(self):
        """The kernel its defaults call (its row carries the docstring)."""
        return self.kernels[0]

    @property
    def params(self):
        return self.main.row.params

    @property
    def selector(self):
        """The parameter choosing the kernel (gelu's approximate), or None."""
        return next((p for p in self.params if p.choices), None)

    @property
    def numbers(self):
        return [p for p in self.params if not p.choices]

    def signature(self, backward: bool) -> str:
        args = ["grad_out: np.ndarray", "x: np.ndarray"] if backward else ["x: np.ndarray"]
        args += [f"{p.name}: {'str' if p.choices else 'float'} = {_literal(p.default)}"
                 for p in self.params]
        args += ["*", "out: Optional[np.ndarray] = None"]
        name = self.name + ("_backward" if backward else "")
        return _wrap_call(f"def {name}(", args, ") -> np.ndarray:")

    def checks(self, backward: bool) -> str:
        """The parameter checks at the top of the function (mlkernels._validate)."""
        where = f"{self.name}{'_backward' if backward else ''}()"
        lines = []
        for p in self.numbers:
            bounds = "".join(f", {k}={_literal(getattr(p, k))}"
                             for k in ("low", "high") if getattr(p, k) is not None)
            bounds += "".join(f", {k}=True" for k in ("low_open", "high_open") if getattr(p, k))
            lines.append(f'{p.name} = V.number("{where}", "{p.name}", {p.name}{bounds})')
        s = self.selector
        suffix = "_backward" if backward else ""
        if s is not None:             # the kernel this value of the parameter chooses
            choices = "(" + ", ".join(f'"{c}"' for c in s.choices) + ")"
            lines.append(f"if type({s.name}) is not str:")
            lines.append(f'    V.choice("{where}", "{s.name}", {s.name}, {choices})')
            for i, k in enumerate(self.kernels):
                lines.append(f'{"if" if i == 0 else "elif"} {s.name} == "{k.row.when[1]}":')
                lines.append(f"    entry = K._activations.{k.row.name}{suffix}")
            lines.append("else:                            # not one of the choices: raises")
            lines.append(f'    V.choice("{where}", "{s.name}", {s.name}, {choices})')
        else:
            lines.append(f"entry = K._activations.{self.name}{suffix}")
        return _indent("\n".join(lines), 4) + "\n"

    @property
    def args(self) -> str:
        return "".join(f", {p.name}" for p in self.numbers)

    @property
    def op(self) -> str:
        """The operation code of the kernel the call chose (for the 16-bit storage driver)."""
        s = self.selector
        if s is None:
            return self.main.NAME
        chain = self.kernels[-1].NAME
        for k in reversed(self.kernels[:-1]):
            chain = f'{k.NAME} if {s.name} == "{k.row.when[1]}" else {chain}'
        return chain

    def docstring(self, backward: bool) -> str:
        return _docstring(self, backward)


@dataclass
class Kernel:
    """One row of the table, with what the templates need of it."""
    row: object
    function: Function

    def __getattr__(self, name):
        return getattr(self.row, name)

    @property
    def NAME(self) -> str:
        return self.row.name.upper()

    @property
    def variant(self) -> str:
        """' (approximate="tanh")' for a kernel that a parameter chooses, else ''."""
        param, value = self.row.when
        if not param or value == self.function.selector.default:
            return ""
        return f' ({param}="{value}")'

    @property
    def spec(self) -> str:
        """Its spec row's name: the function's, with the choosing value in brackets."""
        param, value = self.row.when
        if not param or value == self.function.selector.default:
            return self.function.name
        return f"{self.function.name}[{value}]"

    @property
    def numbers(self):
        return self.function.numbers

    # ---- _act.pxd
    @property
    def param_args(self) -> str:
        return "".join(f"{p.name}, " for p in self.numbers)

    @property
    def ab_args(self) -> str:
        """The parameters as forward_run's a, b."""
        return "".join(f"{ab}, " for ab in "ab"[:len(self.numbers)])

    def signature(self, backward: bool) -> str:
        """The kernel's cdef line, wrapped at the line length."""
        if backward:
            head = f"cdef void {self.row.name}_backward_kernel("
            args = ["const floating* g", "const floating* x", "floating* gx", "Py_ssize_t n"]
        else:
            head = f"cdef void {self.row.name}_kernel("
            args = ["const floating* x", "floating* y", "Py_ssize_t n"]
        args += [f"floating {p.name}" for p in self.numbers] + ["Run run"]
        return _wrap_call(head, args, ") noexcept nogil:")

    def chunk_call(self, backward: bool) -> str:
        """The kernel calling itself on chunk c, on one thread (in its prange)."""
        if backward:
            head = f"            {self.row.name}_backward_kernel("
            args = ["g + c * CHUNK", "x + c * CHUNK", "gx + c * CHUNK"]
        else:
            head = f"            {self.row.name}_kernel("
            args = ["x + c * CHUNK", "y + c * CHUNK"]
        args += ["chunk_len(n, c)"] + [p.name for p in self.numbers] + ["alone(run)"]
        return _wrap_call(head, args, ")")

    def scratch_decl(self, backward: bool) -> str:
        """The declaration of the scratch variables this direction's loop uses."""
        code = (self.row.backward_setup + "\n" + self.row.backward if backward
                else self.row.forward_setup + "\n" + self.row.forward)
        names = [n for n in self.row.scratch.split() if re.search(rf"\b{n}\b", code)]
        return f"\n    cdef floating {', '.join(names)}" if names else ""

    @property
    def math_comment(self) -> str:
        """The forward's math as a comment after the `elif op == NAME:` of forward_run."""
        text = f"  # {self.row.math}"
        return text if len(text) + 30 <= WIDTH else ""

    def doc(self, backward: bool) -> str:
        """The kernel's docstring: its math."""
        text = f"gx = g·f'(x), f'(x) = {self.row.derivative}." if backward \
            else f"{self.row.math}."
        return docstring(text, 4)

    def entry_doc(self, backward: bool) -> str:
        f = self.function.name
        if backward:
            text = (f"grad_x = grad_out·f'(x) into out (or a new array), for "
                    f"mlkernels.activations.{f}_backward{self.variant}.")
        else:
            text = (f"y = f(x) into out (or a new array), for mlkernels.activations."
                    f"{f}{self.variant}.")
        return docstring(text, 4)

    def body(self, backward: bool, spaces: int) -> str:
        return _indent(self.row.backward if backward else self.row.forward, spaces)

    def setup(self, backward: bool) -> str:
        text = self.row.backward_setup if backward else self.row.forward_setup
        return _indent(text, 4) + "\n" if text else ""

    def streams(self, backward: bool) -> bool:
        return self.row.streams[1 if backward else 0]

    def fused_body(self, backward: bool, spaces: int) -> str:
        """The loop body over scalars for the fused 16-bit loop: x[i] -> xv, g[i] -> gv, the
        result into r, in float32 (the same expression as the float32 kernel's)."""
        text = self.row.backward if backward else self.row.forward
        text = re.sub(r"\bgx\[i\] =", "result =", text)
        text = re.sub(r"\by\[i\] =", "result =", text)
        text = re.sub(r"\bx\[i\]", "xv", text)
        text = re.sub(r"\bg\[i\]", "gv", text)
        return _indent(text.replace("<floating>", "<float>"), spaces)

    def fused_scratch(self, backward: bool) -> str:
        """The scratch variables of the fused 16-bit loop (float), after xv, gv, r."""
        names = self.scratch_decl(backward).split("floating ")[-1] if \
            self.scratch_decl(backward) else ""
        return f", {names}" if names else ""

    def fused_signature(self, backward: bool) -> str:
        head = f"cdef void {self.row.name}{'_backward' if backward else ''}_fused16("
        args = ["const uint16_t* g", "const uint16_t* x", "uint16_t* y",
                "Py_ssize_t n"] + [f"float {p.name}" for p in self.numbers] + ["bint stream"]
        return _wrap_call(head, args, ") noexcept nogil:")

    def fused_call(self, backward: bool, spaces: int) -> str:
        head = " " * spaces + f"{self.row.name}{'_backward' if backward else ''}_fused16("
        args = ["gs" if backward else "NULL", "x + start", "y + start",
                "end - start"] + list("ab"[:len(self.numbers)]) + ["stream"]
        return _wrap_call(head, args, ")")

    @property
    def serial_below(self) -> str:
        return "SERIAL_BELOW_MEMORY_BOUND" if self.row.memory_bound else \
            "SERIAL_BELOW_COMPUTE_BOUND"

    @property
    def header(self) -> str:
        """The comment above a kernel pair: its math, why it is written so, its reference."""
        title = f"{self.row.name}{self.variant}"
        lines = [f"\n\n# {'=' * max(8, min(80, WIDTH - 3 - len(title)))} {title}",
                 _comment(f"y = f(x): {self.row.math.removeprefix('y = ')}", 0),
                 _comment(f"f'(x) = {self.row.derivative}", 0)]
        if self.row.how:
            lines.append(_comment(self.row.how, 0))
        lines.append(f"# Reference: mlkernels/reference/activations.py, {self.function.name} "
                     f"and {self.function.name}_backward{self.variant}.")
        return "\n".join(lines)

    @property
    def streams_note(self) -> str:
        words = {(True, True): "both directions stream large outputs",
                 (False, True): "the backward streams large outputs, not the forward, whose "
                                "arithmetic is its bound",
                 (True, False): "the forward streams large outputs, not the backward",
                 (False, False): "neither direction streams: the arithmetic is the bound"}
        return _comment(f"Run: {words[tuple(self.row.streams)]}; "
                        f"{'a memory-bound' if self.row.memory_bound else 'a compute-bound'} "
                        f"loop ({self.serial_below}).", 0)

    # ---- _activations.pyx
    @property
    def entry_params(self) -> str:
        return "".join(f", double {p.name}" for p in self.numbers)

    @property
    def float_args(self) -> str:
        return "".join(f"<float>{p.name}, " for p in self.numbers)

    # ---- specs/activations.py
    @property
    def tested(self) -> str:
        """The keyword arguments the spec rows test."""
        items = []
        for p in self.function.params:
            if p.choices:
                value = self.row.when[1]
            else:
                value = p.default if p.tested is None else p.tested
            if p.choices or p.tested is not None:
                items.append(f'"{p.name}": {_literal(value)}')
        return "{" + ", ".join(items) + "}"

    @property
    def peer_params(self) -> str:
        """The parameters as keyword parameters, with the values this kernel means."""
        out = []
        for p in self.function.params:
            value = self.row.when[1] if p.choices else p.default
            out.append(f", {p.name}={_literal(value)}")
        return "".join(out)

    @property
    def numpy_dict(self) -> str:
        entries = [(key, f"lambda: {code}" if code else "None")
                   for key, code in (("forward", self.row.numpy),
                                     ("backward", self.row.numpy_backward))]
        return _dict("return ", entries, 4)

    @property
    def torch_dict(self) -> str:
        t = self.row.torch
        entries = [(key, f"lambda: {code}" if code else "None")
                   for key, code in (("forward", t.forward), ("forward out=", t.forward_out),
                                     ("backward", t.backward),
                                     ("backward out=", t.backward_out))]
        return _dict("return ", entries, 4)

    @property
    def kinks_literal(self) -> str:
        return repr(tuple(self.row.kinks))


# ------------------------------------------------------------------ docstrings

def _param_type(p) -> str:
    if p.choices:
        return "{" + ", ".join(f'"{c}"' for c in p.choices) + "}" + f', default "{p.default}"'
    return f"float, default {p.default!r}"


def _param_errors(f: Function):
    """(TypeError clauses, ValueError clauses) for the parameters' checks."""
    types, values = [], []
    for p in f.numbers:
        types.append(f"{p.name} is not a real number")
        if p.low is not None or p.high is not None:
            lo = "-inf" if p.low is None else repr(p.low)
            hi = "inf" if p.high is None else repr(p.high)
            interval = ("(" if p.low_open or p.low is None else "[") + f"{lo}, {hi}" + \
                       (")" if p.high_open or p.high is None else "]")
            values.append(f"{p.name} is not finite or not in {interval}")
        else:
            values.append(f"{p.name} is not finite")
    s = f.selector
    if s is not None:
        values.append(f"{s.name} is not one of " + ", ".join(f'"{c}"' for c in s.choices))
    return types, values


def _section(title: str, body: str) -> str:
    return f"{title}\n{'-' * len(title)}\n{body}"


def _docstring(f: Function, backward: bool) -> str:
    """A numpydoc docstring for the function (indented for a def body)."""
    row = f.main.row
    torch_name = row.torch_name or f.name
    if backward:
        intro = f"grad_x = grad_out·f'(x), f'(x) = {row.derivative}."
        for k in f.kernels[1:]:
            intro += f" With {k.row.when[0]}=\"{k.row.when[1]}\": f'(x) = {k.row.derivative}."
        intro += (" It takes the forward's input x (not its output), as this package's "
                  "backwards all do.")
    else:
        intro = f"{row.math.replace('y = ', 'y = ', 1)}"
        intro += f", as ``torch.nn.functional.{torch_name}``." if row.torch.forward else "."
        if row.notes:
            intro += " " + row.notes
    intro += (" bfloat16 (ml_dtypes) and float16 arrays are computed in float32: the result is "
              "the float32 kernel's on the widened input" + (" and grad_out" if backward else "")
              + ", rounded once to nearest even.")
    params = []
    if backward:
        params.append("grad_out : ndarray\n    The gradient of the loss with respect to the "
                      "forward's output, of x's shape and dtype.")
        params.append("x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16\n    The "
                      "forward's input; any shape and strides.")
    else:
        params.append("x : ndarray, float32, float64, bfloat16 (ml_dtypes) or float16\n    Any "
                      "shape; any strides (a non-contiguous x is copied once).")
    for p in f.params:
        params.append(f"{p.name} : {_param_type(p)}\n" + _fill(p.doc, 4, WIDTH - 12))
    if backward:
        params.append("out : ndarray, optional\n    Where to write grad_x: C-contiguous, of "
                      "x's shape and dtype; may be grad_out\n    or x itself (in place).")
    else:
        params.append("out : ndarray, optional\n    Where to write y: C-contiguous, of x's "
                      "shape and dtype; may be x itself (in place).")
    if backward:
        returns = ("grad_x : ndarray\n    The gradient with respect to x, of x's shape and "
                   "dtype (``out`` when given):\n    written, never accumulated into.")
    else:
        returns = "y : ndarray\n    Of x's shape and dtype (``out`` when given)."
    types, values = _param_errors(f)
    arrays = "grad_out or x" if backward else "x"
    clauses = ([f"{arrays} is not an ndarray of float32, float64, bfloat16 or float16"]
               + (["grad_out and x have different dtypes"] if backward else [])
               + ["out is not an ndarray"] + types)
    type_text = ", ".join(clauses[:-1]) + ", or " + clauses[-1] + "."
    value_text = ("grad_out's shape is not x's; " if backward else "") + \
        "".join(f"{v}; " for v in values) + \
        ("out has another shape or dtype, is read-only or not C-contiguous, or overlaps an "
         "input without being it. Nothing is written when it raises.")
    raises = "TypeError\n" + _fill(type_text, 4, WIDTH - 12) + "\nValueError\n" + \
        _fill(value_text, 4, WIDTH - 12)
    see = f"{f.name}_backward : its gradient." if not backward else \
        f"{f.name} : the forward."
    example = ">>> import numpy as np, mlkernels as mk\n" + \
        (row.backward_example if backward else row.example)
    summary = (f"Gradient of ``{f.name}`` with respect to its input x." if backward
               else row.summary)
    parts = [summary, _fill(intro, 0, WIDTH - 12), _section("Parameters", "\n".join(params)),
             _section("Returns", returns), _section("Raises", raises),
             _section("See Also", see), _section("Examples", example)]
    return _indent('"""' + "\n\n".join(parts) + '\n"""', 4)


# ------------------------------------------------------------------ rendering

def views(table):
    """(kernels, functions) in the table's order."""
    functions: Dict[str, Function] = {}
    kernels = []
    for row in table.ACTIVATIONS:
        f = functions.setdefault(row.function, Function(row.function))
        k = Kernel(row, f)
        f.kernels.append(k)
        kernels.append(k)
    for k in kernels:
        if k.row.linear and k.numbers:
            raise ValueError(f"{k.name}: the fused linear takes no parameters (linear=True)")
    for f in functions.values():
        if len(f.kernels) > 1 and f.selector is None:
            raise ValueError(f"{f.name}: several kernels but no parameter with choices")
        if f.selector is not None:
            values = [k.row.when[1] for k in f.kernels]
            if values != list(f.selector.choices) or f.main.row.when[1] != f.selector.default:
                raise ValueError(f"{f.name}: kernels {values} do not match the choices "
                                 f"{f.selector.choices} (default first)")
    return kernels, list(functions.values())


def header(template: str) -> str:
    return (f"# Generated from {TABLE} by mlkernels/_generate.py\n"
            f"# (template: {template}); do not edit.\n")


def docstring(text: str, spaces: int) -> str:
    """A one-paragraph docstring, wrapped and indented (the first line too)."""
    return _fill('"""' + text + '"""', spaces, WIDTH - spaces)


def render(root: Path = PACKAGE_DIR.parent) -> Dict[str, str]:
    """{output path (relative to root): its text} for every target."""
    from Cython.Tempita import Template
    table = load_table(root / "mlkernels")
    kernels, functions = views(table)
    out = {}
    for template, target in TARGETS:
        text = (root / template).read_text()
        linear_kernels = [k for k in kernels if k.row.linear]
        scratch = sorted({name for k in linear_kernels
                          for name in k.scratch_decl(False).split("floating ")[-1].split(", ")
                          if k.scratch_decl(False)})
        body = Template(text, name=template).substitute(
            kernels=kernels, functions=functions, header=header(template), wrap=wrap_list,
            linear_kernels=linear_kernels,
            linear_scratch=f"\n    cdef floating {', '.join(scratch)}" if scratch else "")
        out[target] = body
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is stale")
    parser.add_argument("--root", default=str(PACKAGE_DIR.parent), help="the repository")
    args = parser.parse_args(argv)
    root = Path(args.root)
    stale = []
    for target, text in render(root).items():
        path = root / target
        old = path.read_text() if path.exists() else ""
        if old == text:
            continue
        stale.append(target)
        if args.check:
            diff = difflib.unified_diff(old.splitlines(), text.splitlines(), target + " (now)",
                                        target + " (from the table)", lineterm="", n=1)
            print("\n".join(list(diff)[:40]))
        else:
            path.write_text(text)
            print(f"wrote {target}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run `python mlkernels/_generate.py` "
              f"(never edit a generated file)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
