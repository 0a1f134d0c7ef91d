"""Vectorization report: did GCC vectorize every hot loop, on each ISA variant?

    python -m mlkernels vecreport [--check] [--unmarked] [--isa avx2 --isa avx512]
    python mlkernels/_vecreport.py --check      (the same, without importing the built package)

A hot loop carries a marker on its loop line: ``# simd`` in .pyx/.pxd, ``/* simd */`` in C
headers (on the ``for (...)`` line, or on its ``#pragma omp simd`` line). ``# simd float32``
(``/* simd float32 */``) requires only the float32 instance (the float64 one calls libm, say).
For every marked loop the report prints, per ISA variant (avx2, avx512) and per float type,
whether GCC vectorized it, with which vector width, and GCC's reason when it did not; then,
per kernel function of the built avx512 shared objects, the packed and scalar floating-point
instructions and the masked loads from memory (``objdump -d``). ``--check`` exits with 1
when a marked loop is not vectorized, naming the file, line, type, ISA and GCC's reason.
docs/vectorization.md says how to read it.

How: the C of every kernel module (the build's ``mlkernels/_*.c`` when current, else
generated again with Cython into a temporary folder) is compiled with the build's flags
(``_build_flags.py``) for each ISA and ``-fdump-tree-vect-all``, which holds the messages of
``-fopt-info-vec-optimized``/``-missed`` plus the function each loop was compiled in, the
reason given for every vector size tried (-fopt-info keeps only the last size's, which for a
libm call reads "no vectype for stmt") and the note that a reduction was kept in order. The
messages are mapped back to .pyx/.pxd lines through Cython's ``/* "file.pyx":N`` comments and
to .h lines directly. Loops written inside a C macro (one definition per float type) would all
be reported at the macro's invocation line, so each header is first copied with those macros
expanded in place, line for line, and every line remembers where it came from.

This module imports nothing from mlkernels (it runs on a tree that is not built).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_ISAS = ("avx2", "avx512")
OBJDUMP_ISA = "avx512"                          # the variant whose instructions are counted
VECTOR_BYTES = {"avx2": 32, "avx512": 64}          # the widest vectors each variant prefers
TYPE_BYTES = {"float32": 4, "float64": 8}
# Cython's fused type `floating` is (float, double): specialization __pyx_fuse_0 is float.
FUSED_TYPES = {"0": "float32", "1": "float64"}
FUSED_NAMES: Dict[str, str] = {}                 # C function -> float type, for demangle()


class ReportError(RuntimeError):
    """The report cannot run here (no GCC, no Cython, a compile error...)."""


# ------------------------------------------------------------------------------ markers

PYX_MARK = re.compile(r"#\s*simd\b(?:\s+(float32|float64)\b)?")
C_MARK = re.compile(r"/\*\s*simd\b(?:\s+(float32|float64)\b)?[^*]*\*/")
PYX_LOOP = re.compile(r"^\s*(for|while)\b")
C_FOR = re.compile(r"\bfor\s*\(")
C_SIMD_PRAGMA = re.compile(r"(#\s*pragma\s+omp\s+simd|_Pragma\s*\(\s*\"omp\s+simd)")


@dataclass
class Marker:
    """A marked loop: ``path:line`` is its loop line (where GCC reports it)."""
    path: Path                  # the source file, absolute
    line: int                   # the loop's line (1-based)
    marker_line: int            # the marker's line (the pragma line for `omp simd` markers)
    only: Optional[str]         # "float32"/"float64": only that instance is required
    label: str                  # the enclosing function (and branch), for the reader
    text: str                   # the loop line, stripped
    error: Optional[str] = None  # a marker that is not on a loop
    # The first line of the loop's body, where GCC reports a loop whose header it rebuilt
    # (an omp simd loop written over several lines): looked at when the loop line has nothing.
    body_line: Optional[int] = None


def _pyx_label(lines: List[str], i: int) -> str:
    """The function enclosing line i (0-based) and the if/elif branch right around it."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    branch = None
    for j in range(i - 1, -1, -1):
        s = lines[j]
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        ind = len(s) - len(s.lstrip())
        if ind >= indent:
            continue
        code = s.split("#")[0].strip()
        m = re.match(r"(?:cdef|cpdef|def)\b.*?(\w+)\s*\(", code)
        if m:
            return f"{m.group(1)}: {branch}" if branch else m.group(1)
        if branch is None and re.match(r"(if|elif|else)\b", code):
            branch = code.rstrip(":")[:40]
        indent = ind
    return "?"


def _c_label(lines: List[str], i: int) -> str:
    for j in range(i, -1, -1):
        m = re.search(r"\b(\w+(?:##\w+)?)\s*\([^;]*$", lines[j])
        if m and re.match(r"\s*(static|MLK_INLINE|inline|void|double|float|int)\b", lines[j]):
            return re.sub(r"##\w+", "*", m.group(1))
    return "?"


def _body_line(lines: List[str], loop: int, is_c: bool) -> Optional[int]:
    """The line (1-based) of the first statement of the loop at lines[loop], if it has its
    own line."""
    if is_c:
        code = re.sub(r"/\*.*?\*/", "", lines[loop]).rstrip().rstrip("\\").rstrip()
        if not code.endswith("{"):
            return None
    indent = len(lines[loop]) - len(lines[loop].lstrip())
    for j in range(loop + 1, min(loop + 6, len(lines))):
        text = re.sub(r"/\*.*?\*/", "", lines[j]).strip().rstrip("\\").strip()
        if not text or text.startswith("#"):
            continue
        if not is_c and len(lines[j]) - len(lines[j].lstrip()) <= indent:
            return None
        return j + 1
    return None


def find_markers(sources: Sequence[Path]) -> List[Marker]:
    """Every marked loop of these .pyx/.pxd/.h files."""
    markers = []
    for path in sources:
        lines = path.read_text().splitlines()
        is_c = path.suffix in (".h", ".c")
        for i, text in enumerate(lines):
            if is_c:
                m = C_MARK.search(text)
                if not m:
                    continue
                code = text[:m.start()]
                if C_FOR.search(code):
                    loop = i
                elif C_SIMD_PRAGMA.search(code):      # the loop is the next `for`
                    loop = next((j for j in range(i + 1, min(i + 4, len(lines)))
                                 if C_FOR.search(lines[j])), None)
                else:
                    loop = None
                label = _c_label(lines, i)
            else:
                m = PYX_MARK.search(text)
                if not m:
                    continue
                if text.lstrip().startswith("#"):
                    continue                          # a comment line that mentions "# simd"
                loop = i if PYX_LOOP.match(text) else None
                label = _pyx_label(lines, i)
            if loop is None:
                markers.append(Marker(path, i + 1, i + 1, m.group(1), label, text.strip(),
                                      error="the marker is not on a loop line"))
            else:
                markers.append(Marker(path, loop + 1, i + 1, m.group(1), label,
                                      lines[loop].strip(), body_line=_body_line(lines, loop, is_c)))
    return markers


# ------------------------------------------------------------------------------ sources

@dataclass
class Origin:
    path: Path                 # .pyx/.pxd/.h source file
    line: int
    ftype: Optional[str]       # "float32"/"float64" for a fused or per-type instance, else None


MACRO_DEF = re.compile(r"^\s*#\s*define\s+(\w+)\(([^)]*)\)(.*)$")
STRING = re.compile(r'("(?:\\.|[^"\\])*")')


def _split_args(text: str) -> List[str]:
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    args.append(cur.strip())
    return args


def _substitute(body: str, params: List[str], args: List[str]) -> str:
    """Macro parameter substitution outside string literals, then token pasting."""
    table = dict(zip(params, args))
    parts = STRING.split(body)
    for k in range(0, len(parts), 2):                 # even parts are outside strings
        part = re.sub(r"(?<![#\w])#\s*(\w+)",        # #param -> "arg"
                      lambda m: f'"{table[m.group(1)]}"' if m.group(1) in table else m.group(0),
                      parts[k])
        part = re.sub(r"\b(\w+)\b", lambda m: table.get(m.group(1), m.group(1)), part)
        parts[k] = re.sub(r"\s*##\s*", "", part)
    return "".join(parts)


def _type_of_args(args: List[str]) -> str:
    if "float" in args:
        return "float32"
    if "double" in args:
        return "float64"
    return ", ".join(args)


def expand_header(path: Path) -> Tuple[List[str], List[Origin]]:
    """The header with every invocation of a function-like macro whose body holds a loop
    expanded in place, line for line (so that each loop keeps its own line), and the origin
    of every output line: the macro body's line and the instance's float type."""
    lines = path.read_text().splitlines()
    macros: Dict[str, Tuple[List[str], List[Tuple[int, str]]]] = {}
    in_macro = set()
    i = 0
    while i < len(lines):
        m = MACRO_DEF.match(lines[i])
        if m and lines[i].rstrip().endswith("\\"):
            body = [(i + 1, m.group(3).rstrip()[:-1])]
            j = i + 1
            while j < len(lines):
                text = lines[j].rstrip()
                cont = text.endswith("\\")
                body.append((j + 1, text[:-1] if cont else text))
                if not cont:
                    break
                j += 1
            if any(C_FOR.search(t) for _, t in body):
                macros[m.group(1)] = ([p.strip() for p in m.group(2).split(",")], body)
            in_macro.update(range(i, j + 1))
            i = j + 1
            continue
        i += 1
    out, origin = [], []
    call = re.compile(r"^\s*(%s)\s*\((.*)\)\s*;?\s*$" % "|".join(map(re.escape, macros))) \
        if macros else None
    for i, text in enumerate(lines):
        m = call.match(text) if call is not None and i not in in_macro else None
        if m:
            params, body = macros[m.group(1)]
            args = _split_args(m.group(2))
            ftype = _type_of_args(args)
            for lineno, btext in body:
                out.append(_substitute(btext, params, args))
                origin.append(Origin(path, lineno, ftype))
        else:
            out.append(text)
            origin.append(Origin(path, i + 1, None))
    return out, origin


C_COMMENT = re.compile(r'^\s*/\* "(.+?)":(\d+)\s*$')
C_FUNC = re.compile(r"^(?!typedef|struct|union|enum|extern|#|}|/)[A-Za-z_][\w \*]*?\b(\w+)\(")


def _c_functions(c_lines: List[str]):
    """(line index, name) of every function definition of a Cython-generated C file."""
    for i, text in enumerate(c_lines):
        if text[:1].isalpha() and not text.rstrip().endswith(";"):
            f = C_FUNC.match(text)
            if f:
                yield i, f.group(1)


def fused_types(c_lines: List[str]) -> Dict[str, str]:
    """The float type of every fused specialization: cdef functions carry it in their name
    (``__pyx_fuse_K__pyx_f_...``); a fused def's implementation (``__pyx_pf_...``) does not,
    and is found as the function its wrapper ``__pyx_fuse_K__pyx_pw_...`` calls."""
    types: Dict[str, str] = {}
    starts = list(_c_functions(c_lines)) + [(len(c_lines), "")]
    for (i, name), (end, _) in zip(starts, starts[1:]):
        fuse = re.match(r"__pyx_fuse_(\d+)", name)
        if not fuse:
            continue
        ftype = FUSED_TYPES.get(fuse.group(1), f"fuse_{fuse.group(1)}")
        types[name] = ftype
        if "__pyx_pw_" in name:
            for text in c_lines[i:end]:
                call = re.search(r"\b(__pyx_pf_\w+)\(", text)
                if call:
                    types[call.group(1)] = ftype
                    break
    return types


def cython_origins(c_lines: List[str], known: Dict[str, Path]) -> List[Optional[Origin]]:
    """For each line of a Cython-generated C file: the .pyx/.pxd line it was generated from
    (the last ``/* "file.pyx":N`` comment above it) and, inside a fused specialization,
    its float type (see fused_types)."""
    types = fused_types(c_lines)
    FUSED_NAMES.update(types)                   # for demangle() of the objdump table
    starts = dict(_c_functions(c_lines))
    origins: List[Optional[Origin]] = []
    src: Optional[Tuple[Path, int]] = None
    ftype: Optional[str] = None
    for i, text in enumerate(c_lines):
        m = C_COMMENT.match(text)
        if m:
            path = known.get(os.path.basename(m.group(1)))
            src = (path, int(m.group(2))) if path is not None else None
        elif i in starts:                           # a function definition starts
            ftype = types.get(starts[i])
            src = None
        origins.append(Origin(src[0], src[1], ftype) if src else None)
    return origins


# ------------------------------------------------------------------------------ compiling

def load_build_flags(package_dir: Path):
    """mlkernels/_build_flags.py of the tree being checked (the flags setup.py builds with)."""
    spec = importlib.util.spec_from_file_location("_mlk_build_flags",
                                                  package_dir / "_build_flags.py")
    if spec is None or not (package_dir / "_build_flags.py").exists():
        raise ReportError(f"no _build_flags.py in {package_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compiler() -> List[str]:
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "gcc")
    if not shutil.which(cc[0]):
        raise ReportError(f"no C compiler {cc[0]!r} on PATH: the report needs GCC")
    version = subprocess.run(cc + ["--version"], capture_output=True, text=True).stdout
    if "clang" in version.lower() or not re.search(r"gcc|GCC|Free Software Foundation", version):
        raise ReportError(f"{cc[0]} is not GCC: the report reads GCC's vectorizer messages")
    return cc


def gcc_version(cc: List[str]) -> str:
    return subprocess.run(cc + ["-dumpfullversion"], capture_output=True, text=True).stdout.strip()


def cython_available() -> bool:
    return importlib.util.find_spec("Cython") is not None


def base_cflags() -> List[str]:
    """The flags Python's build adds before ours (setuptools uses sysconfig's CFLAGS and
    CCSHARED: -DNDEBUG -fwrapv -O3 -Wall -fPIC here), without -g, which only slows the report."""
    flags = shlex.split(sysconfig.get_config_var("CFLAGS") or "")
    flags += shlex.split(sysconfig.get_config_var("CCSHARED") or "")
    return [f for f in flags if not f.startswith("-g")]


def include_dirs() -> List[str]:
    dirs = [sysconfig.get_paths()["include"]]
    try:
        import numpy
        dirs.insert(0, numpy.get_include())
    except ImportError:                               # pragma: no cover - numpy is required
        raise ReportError("numpy is needed for its C headers")
    return dirs


def c_is_current(c_file: Path, pyx: Path) -> bool:
    """The build's C file exists and is newer than its .pyx and every .pxd beside it."""
    if not c_file.exists():
        return False
    newest = max([pyx.stat().st_mtime] + [p.stat().st_mtime for p in pyx.parent.glob("*.pxd")])
    return c_file.stat().st_mtime >= newest


def cythonize_to(pyx: Path, out: Path, directives: Dict, include: List[Path]) -> None:
    cmd = [sys.executable, "-m", "cython", "-o", str(out)]
    for key, value in directives.items():
        cmd += ["-X", f"{key}={value}"]
    for d in include:
        cmd += ["-I", str(d)]
    cmd.append(str(pyx))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReportError(f"Cython failed on {pyx}:\n{done.stderr[-3000:]}")


# ------------------------------------------------------------------------------ GCC's messages

MSG = re.compile(r"^(.+?):(\d+):(\d+): (optimized|missed|note): (.*)$")
VECTORIZED = re.compile(r"loop vectorized using (\d+) byte vectors")


@dataclass
class LoopCopy:
    """One loop of the compiled C as GCC reported it (one inlined copy, one function)."""
    module: str
    function: str               # the function GCC compiled it in (after inlining)
    where: Tuple[str, int, int]  # (file, line, column) in the compiled sources
    vectorized: int = 0          # "loop vectorized" messages (the main loop and its epilogue)
    failed: int = 0              # "couldn't vectorize loop" messages
    widths: List[int] = field(default_factory=list)
    in_order: bool = False       # a reduction kept in program order (fold-left): serial adds
    reason: Optional[str] = None
    reason_at: Optional[Tuple[str, int]] = None   # where GCC located the reason (compiled file)
    reason_src: Optional[str] = None              # the same, as a source line

    @property
    def ok(self) -> bool:
        return self.vectorized > 0 and self.failed == 0 and not self.in_order


def parse_dump(dump: Path, module: str, src_dir: Path) -> List[LoopCopy]:
    """The loops of a -fdump-tree-vect-all dump, with verdict, widths and reason."""
    prefix = str(src_dir) + os.sep
    copies: Dict[Tuple, LoopCopy] = {}
    function = "?"
    pending: List[Tuple[str, int, str]] = []   # reasons since the last verdict
    in_order = set()
    echo = False                                 # GCC repeats the final reason after a verdict
    with open(dump, errors="replace") as f:
        for raw in f:
            if raw.startswith(";; Function "):
                head = raw[len(";; Function "):]
                function = head.split(" (", 1)[1].split(",", 1)[0] if " (" in head else head
                pending, in_order = [], set()
                continue
            if not raw.startswith(prefix) or (": note: " in raw and "in-order" not in raw):
                continue                                # most of the dump: analysis notes
            m = MSG.match(raw.rstrip("\n"))
            if not m:
                continue
            file, line, col, kind, text = (os.path.basename(m.group(1)), int(m.group(2)),
                                           int(m.group(3)), m.group(4), m.group(5).strip())
            where = (file, line, col)
            if echo:
                echo = False
                if kind == "missed" and text.startswith("not vectorized"):
                    continue
            if kind == "optimized" and text.startswith("loop vectorized"):
                copy = copies.setdefault((function, where), LoopCopy(module, function, where))
                copy.vectorized += 1
                copy.widths.append(int(VECTORIZED.search(text).group(1)))
                copy.in_order |= where in in_order
                pending = []
            elif kind == "missed" and text.startswith("couldn't vectorize loop"):
                copy = copies.setdefault((function, where), LoopCopy(module, function, where))
                copy.failed += 1
                if copy.reason is None:
                    reason = next((p for p in pending if p[2].startswith("not vectorized")),
                                  pending[0] if pending else None)
                    if reason is not None:
                        copy.reason = re.sub(r"^not vectorized:\s*", "", reason[2])
                        copy.reason_at = (reason[0], reason[1])
                pending = []
                echo = True
            elif kind == "note" and "in-order (fold-left) reduction" in text:
                in_order.add(where)
            elif kind == "missed" and "basic block" not in text and "Unknown misalignment" \
                    not in text:
                pending.append((file, line, text))
    return list(copies.values())


# ------------------------------------------------------------------------------ objdump

INSN = re.compile(r"^\s*[0-9a-f]+:\s+([a-z][\w.]*)\s*(.*)$")
SYMBOL = re.compile(r"^[0-9a-f]+ <(.+)>:$")


@dataclass
class Counts:
    packed: Dict[str, int] = field(default_factory=lambda: {"zmm": 0, "ymm": 0, "xmm": 0})
    scalar: int = 0
    masked_loads: int = 0

    @property
    def any(self) -> bool:
        return bool(sum(self.packed.values()) or self.scalar or self.masked_loads)


def _operands(text: str) -> List[str]:
    text = text.split("#")[0].split("<")[0].strip()
    ops, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            ops.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        ops.append(cur)
    return [o.strip() for o in ops]


def classify(mnemonic: str, operands: str, counts: Counts) -> None:
    """Count one AT&T instruction: packed (ps/pd) by widest register, scalar (ss/sd), and
    masked loads from memory (a {%k} destination register fed by a memory operand)."""
    integer = mnemonic.startswith(("vp", "p")) and not mnemonic.startswith("vperm")
    if not integer and mnemonic.endswith(("ps", "pd")) or mnemonic.startswith("vbroadcasts"):
        reg = "zmm" if "%zmm" in operands else "ymm" if "%ymm" in operands else "xmm"
        counts.packed[reg] += 1
    elif not integer and mnemonic.endswith(("ss", "sd")):
        counts.scalar += 1
    if "{%k" in operands:
        ops = _operands(operands)
        if len(ops) >= 2 and "{%k" in ops[-1] and re.search(r"%[xyz]mm", ops[-1]) \
                and any(_data_memory(o) for o in ops[:-1]):
            counts.masked_loads += 1


def _data_memory(operand: str) -> bool:
    """A memory operand that reads data (an array), not a constant (%rip-relative) nor the
    stack frame (a spill: %rsp, or %rbp with a negative offset)."""
    m = re.match(r"(-?0x[0-9a-f]+|-?\d+)?\((%\w+)", operand)
    if not m:
        return False
    base, disp = m.group(2), m.group(1) or "0"
    return not (base in ("%rip", "%rsp") or (base == "%rbp" and disp.startswith("-")))


def demangle(symbol: str) -> str:
    """__pyx_fuse_0__pyx_f_9mlkernels_5_norm_row_forward._omp_fn.0 ->
    _norm.row_forward[float32] (OpenMP region 0); anything else unchanged."""
    base, dot, suffix = symbol.partition(".")
    m = re.match(r"(?:__pyx_fuse_(\d+))?__pyx_(pf|pw|f)_(.*)$", base)
    if not m:
        return symbol
    rest, module = m.group(3), None
    while True:                                  # <length><component>_ per module component
        n = re.match(r"(\d+)", rest)
        if not n:
            break
        start, length = len(n.group(1)), int(n.group(1))
        if len(rest) <= start + length or rest[start + length] != "_":
            break                                  # a def's index, not a component
        module = rest[start:start + length]
        rest = rest[start + length + 1:]
    name = re.sub(r"^\d+", "", rest) if m.group(2) in ("pf", "pw") else rest
    name = f"{module}.{name}" if module else name
    if m.group(1) is not None:
        name += f"[{FUSED_TYPES.get(m.group(1), 'fuse_' + m.group(1))}]"
    elif base in FUSED_NAMES:
        name += f"[{FUSED_NAMES[base]}]"
    if suffix.startswith("_omp_fn."):
        name += f" (OpenMP region {suffix.split('.')[-1]})"
    elif suffix:
        name += f" ({suffix})"
    return name


def objdump_counts(so: Path, keep: re.Pattern) -> Dict[str, Counts]:
    done = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-w", str(so)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ReportError(f"objdump failed on {so}: {done.stderr[-500:]}")
    result: Dict[str, Counts] = {}
    current: Optional[Counts] = None
    for line in done.stdout.splitlines():
        s = SYMBOL.match(line)
        if s:
            current = result.setdefault(s.group(1), Counts()) if keep.search(s.group(1)) else None
            continue
        if current is None:
            continue
        m = INSN.match(line)
        if m:
            classify(m.group(1), m.group(2), current)
    return {k: v for k, v in result.items() if v.any}


# ------------------------------------------------------------------------------ the report

@dataclass
class LoopResult:
    """A marked loop, one float type, one ISA: every copy GCC compiled of it."""
    copies: List[LoopCopy]

    @property
    def ok(self) -> bool:
        return bool(self.copies) and all(c.ok for c in self.copies)

    @property
    def width(self) -> int:
        return max((max(c.widths) for c in self.copies if c.widths), default=0)

    def why(self) -> str:
        if not self.copies:
            return "GCC reported no loop at this line (removed, unrolled or made a library call)"
        bad = [c for c in self.copies if not c.ok]
        c = bad[0]
        where = f" [{demangle(c.function)}" + (f", {len(bad)} of {len(self.copies)} copies"
                                                if len(self.copies) > 1 else "") + "]"
        if c.vectorized and c.in_order:
            return ("an in-order (fold-left) reduction: vector loads but one serial add per "
                    "element; use an omp simd reduction (_reduce.h)" + where)
        at = f" (at {c.reason_src})" if c.reason_src else ""
        return (c.reason or "no reason given") + at + where


@dataclass
class Report:
    isas: List[str]
    markers: List[Marker]
    # (path, line) -> type -> isa -> LoopResult
    loops: Dict[Tuple[Path, int], Dict[Optional[str], Dict[str, LoopResult]]]
    root: Path
    header: List[str]
    unmarked: Dict[Tuple[Path, int], Dict[Optional[str], Dict[str, LoopResult]]]
    objdump: Optional[Dict[str, Dict[str, Counts]]] = None
    objdump_note: str = ""

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def results(self, marker: Marker) -> Dict[Optional[str], Dict[str, LoopResult]]:
        found = self.loops.get((marker.path, marker.line), {})
        return found or {None: {isa: LoopResult([]) for isa in self.isas}}

    def required(self, marker: Marker, ftype: Optional[str]) -> bool:
        return marker.only is None or ftype is None or ftype == marker.only

    def failures(self) -> List[str]:
        """One line per marked loop, type and ISA that is required and not vectorized."""
        out = []
        for mk in self.markers:
            if mk.error:
                out.append(f"{self.rel(mk.path)}:{mk.marker_line}: {mk.error}: {mk.text}")
                continue
            for ftype, per_isa in sorted(self.results(mk).items(), key=_type_key):
                if not self.required(mk, ftype):
                    continue
                for isa in self.isas:
                    r = per_isa.get(isa, LoopResult([]))
                    if not r.ok:
                        out.append(f"{self.rel(mk.path)}:{mk.line}: {ftype or 'all types'}, "
                                   f"{isa}: not vectorized: {r.why()}")
        return out


def _type_key(item):
    return (item[0] is not None, item[0] or "")


def analyse(package_dir: Path = PACKAGE_DIR, modules: Optional[Sequence[Path]] = None,
            extra_dirs: Sequence[Path] = (), isas: Sequence[str] = DEFAULT_ISAS, jobs: int = 2,
            objdump: bool = True, keep: Optional[Path] = None) -> Report:
    """Compile every kernel module (or the given .pyx files) for each ISA and collect GCC's
    verdict on every loop; see the module docstring."""
    package_dir = Path(package_dir).resolve()
    flags = load_build_flags(package_dir)
    cc = compiler()
    if not cython_available():
        raise ReportError("Cython is not installed (pip install '.[test]' brings it)")
    unknown = [i for i in isas if i not in flags.ISA_FLAGS_GCC]
    if unknown:
        raise ReportError(f"unknown ISA variant(s) {unknown}; known: {list(flags.ISA_FLAGS_GCC)}")
    if modules is None:
        modules = [package_dir / f"{m}.pyx" for m in flags.kernel_modules(package_dir)]
    modules = [Path(m).resolve() for m in modules]
    dirs = [package_dir] + [Path(d).resolve() for d in extra_dirs] + \
        sorted({m.parent for m in modules} - {package_dir})
    sources = sorted({p for d in dirs for p in d.glob("*") if p.suffix in (".pyx", ".pxd", ".h")})
    known = {p.name: p for p in sources}
    markers = find_markers(sources)

    work_ctx = tempfile.TemporaryDirectory(prefix="mlk-vecreport-") if keep is None else None
    work = Path(keep if keep is not None else work_ctx.name).resolve()
    try:
        src_dir = work / "src"
        src_dir.mkdir(parents=True, exist_ok=True)
        # headers, with their loop macros expanded line for line
        origins: Dict[str, List[Optional[Origin]]] = {}
        for d in dirs:
            for h in sorted(d.glob("*.h")):
                lines, origin = expand_header(h)
                (src_dir / h.name).write_text("\n".join(lines) + "\n")
                origins[h.name] = origin
        # C of each module: the build's when current, else Cython's output here
        c_note = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            todo = {}
            for pyx in modules:
                c_out = src_dir / f"{pyx.stem}.c"
                if c_is_current(pyx.with_suffix(".c"), pyx):
                    shutil.copyfile(pyx.with_suffix(".c"), c_out)
                    c_note.append(f"{pyx.stem}: the build's C")
                else:
                    include = [pyx.parent] + ([package_dir.parent] if pyx.parent != package_dir
                                              else [])
                    todo[pool.submit(cythonize_to, pyx, c_out, flags.CYTHON_DIRECTIVES,
                                     include)] = pyx
                    c_note.append(f"{pyx.stem}: generated by Cython")
            for fut in concurrent.futures.as_completed(todo):
                fut.result()
        used = set(modules)                     # the sources the compiled C comes from
        for pyx in modules:
            c_text = (src_dir / f"{pyx.stem}.c").read_text(errors="replace")
            origins[f"{pyx.stem}.c"] = cython_origins(c_text.splitlines(), known)
            used.update(p for p in sources if p.suffix != ".pyx" and f'{p.name}"' in c_text)
        for h in sorted(p for p in used if p.suffix == ".h"):     # headers they include
            text = h.read_text()
            used.update(p for p in sources if p.suffix == ".h" and f'#include "{p.name}"' in text)
        markers = [m for m in markers if m.path in used]

        omp = [] if os.environ.get("MLKERNELS_NO_OPENMP") == "1" else list(flags.OPENMP_GCC)
        defines = [f"-D{k}={v}" if v is not None else f"-D{k}" for k, v in flags.DEFINES]
        incs = [f"-I{src_dir}"] + [f"-I{d}" for d in include_dirs()]

        def compile_one(pyx: Path, isa: str) -> List[LoopCopy]:
            dump = work / f"{pyx.stem}.{isa}.vect"
            # assembly thrown away, but an object file for avx512: the instruction counts fall
            # back on it where the built .so is missing or stripped
            out = ["-c", "-o", str(work / f"{pyx.stem}.{isa}.o")] if isa == OBJDUMP_ISA \
                else ["-S", "-o", os.devnull]
            cmd = (cc + base_cflags() + incs + defines + list(flags.COMMON_GCC)
                   + list(flags.ISA_FLAGS_GCC[isa]) + omp
                   + [f"-fdump-tree-vect-all={dump}"] + out + [str(src_dir / f"{pyx.stem}.c")])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise ReportError(f"compiling {pyx.stem} for {isa} failed:\n"
                                  f"{' '.join(cmd)}\n{done.stderr[-3000:]}")
            copies = parse_dump(dump, pyx.stem, src_dir)
            if keep is None:
                dump.unlink()
            return copies

        results: Dict[Tuple[Path, int], Dict[Optional[str], Dict[str, List[LoopCopy]]]] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(compile_one, pyx, isa): isa for isa in isas for pyx in modules}
            for fut in concurrent.futures.as_completed(futures):
                isa = futures[fut]
                for copy in fut.result():
                    if copy.reason_at is not None:
                        o = _origin(origins, *copy.reason_at)
                        if o is not None:
                            copy.reason_src = f"{o.path.name}:{o.line}"
                    o = _origin(origins, *copy.where[:2])
                    if o is None:
                        continue
                    results.setdefault((o.path, o.line), {}).setdefault(o.ftype, {}) \
                        .setdefault(isa, []).append(copy)
        objdump_result = _objdump(package_dir, modules, work) if objdump else (None, "")
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()

    def as_results(items):
        return {key: {t: {isa: LoopResult(per.get(isa, [])) for isa in isas}
                      for t, per in by_type.items()} for key, by_type in items}

    where = {}                                  # marked loop -> the line GCC reported it at
    for m in markers:
        if m.error:
            continue
        key = (m.path, m.line)
        if key not in results and m.body_line and (m.path, m.body_line) in results:
            key = (m.path, m.body_line)
        where[(m.path, m.line)] = key
    taken = set(where.values())
    report = Report(
        isas=list(isas), markers=markers, root=package_dir.parent,
        loops=as_results((k, results[v]) for k, v in where.items() if v in results),
        unmarked=as_results((k, v) for k, v in results.items() if k not in taken),
        header=[f"GCC {gcc_version(cc)}, Cython {_cython_version()}, Python "
                f"{platform.python_version()}, {_cpu_name()}; "
                f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
                f"flags: {' '.join(base_cflags() + list(flags.COMMON_GCC) + omp)} + ISA flags "
                f"({'; '.join(f'{i}: ' + ' '.join(flags.ISA_FLAGS_GCC[i]) for i in isas)})",
                "C: " + ", ".join(c_note)])
    report.objdump, report.objdump_note = objdump_result
    return report


def _origin(origins: Dict[str, List[Optional[Origin]]], file: str, line: int
            ) -> Optional[Origin]:
    table = origins.get(file)
    return table[line - 1] if table is not None and 0 < line <= len(table) else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.machine()


def _cython_version() -> str:
    try:
        import Cython
        return Cython.__version__
    except ImportError:                               # pragma: no cover
        return "?"


def _objdump(package_dir: Path, modules: Sequence[Path], work: Path
             ) -> Tuple[Optional[Dict[str, Dict[str, Counts]]], str]:
    """Instruction counts per kernel function: of the built avx512 shared object of each
    module (package_dir/_isa_avx512), or, where there is none or it is stripped of its
    function symbols (release builds are), of the object file the report compiled from the
    same C with the same flags. Returns the counts and a note saying which was read."""
    if not shutil.which("objdump"):
        return None, "objdump is not on PATH: no instruction counts"
    so_dir = package_dir / "_isa_avx512"
    keep = re.compile(r"__pyx_(?:p?f|pw)_\d+\w*|^mlk_")
    counts: Dict[str, Dict[str, Counts]] = {}
    read_so, read_obj, stale = [], [], []
    for pyx in modules:
        sos = sorted(so_dir.glob(f"{pyx.stem}.*so"))
        found = objdump_counts(sos[0], keep) if sos else {}
        if found:
            read_so.append(pyx.stem)
            if sos[0].stat().st_mtime < pyx.stat().st_mtime:
                stale.append(pyx.stem)
        elif (work / f"{pyx.stem}.{OBJDUMP_ISA}.o").exists():
            found = objdump_counts(work / f"{pyx.stem}.{OBJDUMP_ISA}.o", keep)
            read_obj.append(pyx.stem + (" (its .so is stripped)" if sos else ""))
        counts[pyx.stem] = found
    note = []
    if read_so:
        note.append(f"objdump -d of the built {so_dir.name}/*.so of {', '.join(read_so)}"
                    + (f" (older than their .pyx, rebuild: {', '.join(stale)})" if stale else ""))
    if read_obj:
        note.append(f"of the report's own {OBJDUMP_ISA} object files (the same C and flags; no "
                    f"built .so with symbols) for {', '.join(read_obj)}")
    return counts, "; ".join(note) or "no instruction counts"


def _cell(r: LoopResult, ftype: Optional[str], isa: str, required: bool) -> str:
    if r.ok:
        lanes = f" x{r.width // TYPE_BYTES[ftype]}" if ftype in TYPE_BYTES else ""
        narrow = " (narrow)" if r.width < VECTOR_BYTES.get(isa, 0) else ""
        return f"yes {r.width} B{lanes}{narrow}"
    if not r.copies:
        return "NO VERDICT" if required else "no verdict"
    if any(c.in_order and c.vectorized for c in r.copies):
        return "SERIAL SUM" if required else "serial sum (allowed)"
    return "NO" if required else "no (allowed)"


def format_report(report: Report, show_unmarked: bool = False) -> str:
    out = ["mlkernels vectorization report", *report.header, ""]
    isas = report.isas
    out.append(f"Marked loops ('# simd', '/* simd */'): vectorized on {' | '.join(isas)} "
               "(vector bytes x lanes of the type); 'allowed': not required by a '# simd <type>' "
               "marker")
    by_file: Dict[Path, List[Marker]] = {}
    for mk in report.markers:
        by_file.setdefault(mk.path, []).append(mk)
    reasons = []
    scalar_allowed = []
    n_instances = n_ok = 0
    for path in sorted(by_file):
        out.append(f"{report.rel(path)}")
        for mk in sorted(by_file[path], key=lambda m: m.line):
            if mk.error:
                out.append(f"  {mk.marker_line:5d}  {mk.error}: {mk.text}")
                continue
            label = mk.label if len(mk.label) <= 44 else mk.label[:43] + "~"
            for k, (ftype, per_isa) in enumerate(sorted(report.results(mk).items(),
                                                        key=_type_key)):
                required = report.required(mk, ftype)
                cells = [_cell(per_isa.get(isa, LoopResult([])), ftype, isa, required)
                         for isa in isas]
                head = f"  {mk.line:5d}  {label:44s}" if k == 0 else " " * 53
                out.append(f"{head} {ftype or 'all':8s} " + " | ".join(f"{c:22s}" for c in cells))
                for isa in isas:
                    r = per_isa.get(isa, LoopResult([]))
                    if required:
                        n_instances += 1
                        n_ok += r.ok
                    if not r.ok:
                        line = f"{report.rel(mk.path)}:{mk.line} {ftype or 'all'} {isa}: {r.why()}"
                        (reasons if required else scalar_allowed).append(line)
    failures = report.failures()
    out.append("")
    n_loops = sum(1 for m in report.markers if not m.error)
    out.append(f"Summary: {n_loops} marked loops; {n_instances} required (loop, type, ISA) "
               f"instances, {n_ok} vectorized, {n_instances - n_ok} not"
               + (f"; {sum(1 for m in report.markers if m.error)} misplaced markers"
                  if any(m.error for m in report.markers) else ""))
    if failures:
        out.append("NOT VECTORIZED (required):")
        out += [f"  {f}" for f in failures]
    if scalar_allowed:
        out.append(f"Scalar but allowed by '# simd float32' ({len(scalar_allowed)}):")
        out += [f"  {f}" for f in scalar_allowed]

    if show_unmarked:
        out += ["", "Unmarked loops of the kernel sources (mark the hot ones):"]
        for (path, line), by_type in sorted(report.unmarked.items(),
                                            key=lambda kv: (str(kv[0][0]), kv[0][1])):
            if path.suffix not in (".pyx", ".pxd", ".h"):
                continue
            text = path.read_text().splitlines()[line - 1].strip()
            if C_SIMD_PRAGMA.search(text):
                continue            # the loop adding up an omp simd reduction's lanes, once
            for ftype, per_isa in sorted(by_type.items(), key=_type_key):
                cells = [_cell(per_isa[isa], ftype, isa, True) for isa in isas]
                why = next((per_isa[i].why() for i in isas if not per_isa[i].ok), "")
                out.append(f"  {report.rel(path)}:{line} {ftype or 'all':8s} "
                           + " | ".join(f"{c:20s}" for c in cells) + f"  {text[:50]}"
                           + (f"\n      {why[:150]}" if why else ""))

    out += ["", "Instructions per kernel function of the avx512 variant: "
            + (report.objdump_note or "not asked for")]
    if report.objdump:
        out.append(f"  {'function':60s} {'packed zmm':>10s} {'ymm':>5s} {'xmm':>5s} "
                   f"{'scalar':>7s} {'masked loads':>13s}")
        total = Counts()
        masked = []
        for module in sorted(report.objdump):
            for sym, c in sorted(report.objdump[module].items(), key=lambda kv: demangle(kv[0])):
                name = demangle(sym)
                if name == sym:                       # a C function (mlk_*): say whose copy
                    name = f"{module}: {sym}"
                out.append(f"  {name[:60]:60s} {c.packed['zmm']:10d} {c.packed['ymm']:5d} "
                           f"{c.packed['xmm']:5d} {c.scalar:7d} {c.masked_loads:13d}")
                for k in total.packed:
                    total.packed[k] += c.packed[k]
                total.scalar += c.scalar
                total.masked_loads += c.masked_loads
                if c.masked_loads:
                    masked.append(f"{name} ({c.masked_loads})")
        out.append(f"  {'total':60s} {total.packed['zmm']:10d} {total.packed['ymm']:5d} "
                   f"{total.packed['xmm']:5d} {total.scalar:7d} {total.masked_loads:13d}")
        out.append("Masked loads from memory in: " + (", ".join(masked) if masked else "none"))
    return "\n".join(line.rstrip() for line in out)


# ------------------------------------------------------------------------------ command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a marked loop is not vectorized (the CI step)")
    parser.add_argument("--isa", action="append", choices=["baseline", "avx2", "avx512"],
                        help="ISA variant to compile for (repeatable; default avx2 and avx512)")
    parser.add_argument("--unmarked", action="store_true",
                        help="also list the loops of the kernel sources that carry no marker")
    parser.add_argument("--no-objdump", action="store_true",
                        help="skip the instruction counts of the built shared objects")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compiles (default 2)")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR,
                        help="the mlkernels folder to check (default: this one)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the generated sources and GCC's dumps in DIR")


def run(args: argparse.Namespace) -> int:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        print(f"vecreport: {platform.machine()} is not x86-64: the avx2/avx512 variants are "
              "not built here, nothing to check")
        return 0
    try:
        report = analyse(args.package_dir, isas=args.isa or DEFAULT_ISAS, jobs=args.jobs,
                         objdump=not args.no_objdump, keep=args.keep)
    except ReportError as e:
        print(f"vecreport: {e}", file=sys.stderr)
        return 2
    print(format_report(report, show_unmarked=args.unmarked))
    failures = report.failures()
    if args.check and failures:
        print(f"\nvecreport --check: {len(failures)} marked loop instance(s) not vectorized "
              "(see docs/vectorization.md):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="vecreport", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
