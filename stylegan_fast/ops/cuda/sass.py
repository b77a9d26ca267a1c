"""Static checks of the CUDA extension's sm_90 machine code: vector width, local memory, clusters.

``stylegan-fast build-ext --report`` disassembles the built extension (``cuobjdump --dump-sass``),
joins each kernel's SASS with its ``ptxas -v`` line from the build log, and checks every kernel:

* no local memory: no ``LDL``/``STL`` instruction, and ptxas reports 0 bytes of spill stores and
  loads (the stack frame is shown, not checked: its use shows as ``LDL``/``STL``);
* vector width: by convention of ``csrc/``, a kernel template's last integer argument is its
  vector width V (``NOT_VECTOR_WIDTH`` lists the exceptions) and its first argument the storage
  type T, or an op ``Op<T>``. An instantiation with V > 1 (the vector path) must load, and store
  unless its op writes no big tensor (``READ_ONLY_OPS``), V * sizeof(T) bytes at a time, as its
  widest global accesses; and that must be 16 bytes (``LDG.E.128``/``STG.E.128``), except where
  :func:`narrow_by_design` gives the reason. A vector split by the compiler (alignment lost) shows
  as a narrower widest access. Parameters and partial sums are narrow by nature, so the big
  tensors are judged by the widest access: a split of one of several big tensors only would go
  unseen. V == 1 instantiations are the fallback for unaligned or odd sizes: reported, not failed;
* clusters: a kernel whose name contains ``cluster`` must use a cluster barrier
  (``UCGABAR_ARV``/``UCGABAR_WAIT``) and distributed shared memory (``MAPA``, or generic
  ``LD``/``ST``/``ATOM`` through the shared window ``SR_SWINHI``, which is what nvcc 13.0 emits for
  ``cluster.map_shared_rank``) in its sm_90 code.

The parsers and checks are pure functions of the text; only :func:`find_cuobjdump`,
:func:`dump_sass` and :func:`report` touch the file system or run tools.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ... import environment
from . import build

REPORT_ARCH = "9.0"  # the arch whose cubin the report inspects (sm_90; sm_90a counts too)
ELEMENT_BYTES = {"float": 4, "double": 8, "half": 2, "bf16": 2, "__half": 2, "__nv_bfloat16": 2}
# Kernel families whose last integer template argument is not a vector width.
NOT_VECTOR_WIDTH = {"finalize_sums_kernel": "K, the values per partial"}
# Ops of the per-plane kernels that write no big tensor (only per-unit partial sums).
READ_ONLY_OPS = {"StrengthGradOp": "noise_inject backward: sums of dy * noise per channel"}
NARROW_COLS_REASON = (
    "cols (channels_last) kernels of 16-bit types take 4 channels per thread, 8-byte accesses "
    "(cols_vec_width, csrc/plane.cuh): 8 channels take the epilogue's from 73 / 108 registers "
    "(forward / backward) to 99 / 134, one resident 256-thread block per SM fewer (2 instead of 3, "
    "1 instead of 2) for the same bytes per thread")

_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)(.*)$")
_WIDTH_TOKENS = {"U8": 8, "S8": 8, "U16": 16, "S16": 16, "64": 64, "128": 128, "256": 256}


class SassError(RuntimeError):
    """The SASS could not be produced (no cuobjdump, no cubin for the arch); the message says so."""


@dataclass
class SassFunction:
    """What the checks need of one function of a ``cuobjdump --dump-sass`` listing."""
    name: str                                          # mangled
    arch: str                                          # e.g. 'sm_90'
    loads: Counter = field(default_factory=Counter)    # global load width (bits) -> count
    stores: Counter = field(default_factory=Counter)   # global store width (bits) -> count
    local: int = 0                                     # LDL / STL instructions
    cluster_barriers: int = 0                          # UCGABAR_* / CGABAR_* instructions
    mapa: int = 0                                      # MAPA instructions
    generic: int = 0                                   # generic LD / ST / ATOM / RED
    shared_window: bool = False                        # reads SR_SWINHI (the shared window)

    @property
    def dsmem(self) -> bool:
        """Whether it accesses distributed shared memory (another CTA's, in a cluster)."""
        return self.mapa > 0 or (self.shared_window and self.generic > 0)


@dataclass
class KernelCheck:
    """One row of the report."""
    name: str                          # demangled, short
    mangled: str
    arch: str
    info: Optional[build.KernelInfo]   # ptxas' registers / stack / spills (None: not in the log)
    load_bits: int                     # widest global load (0: none)
    store_bits: int                    # widest global store (0: none)
    local: int                         # LDL / STL instructions
    kind: str                          # 'vector' (V > 1), 'scalar' (V == 1), 'aux' (no V)
    cluster: bool                      # a cluster kernel (name contains 'cluster')
    problems: list = field(default_factory=list)   # why it fails (empty: passes)
    note: str = ""                     # what kind of pass, when it is not plain

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.problems:
            return "FAIL: " + "; ".join(self.problems)
        return "ok" + (f" ({self.note})" if self.note else "")


@dataclass
class Report:
    so: Optional[Path]
    arch: str
    checks: list                       # [KernelCheck]
    notes: list = field(default_factory=list)      # report-level problems (no cubin, no log...)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and not self.notes


# ---------------------------------------------------------------------------- parsing
def access_bits(opcode: str) -> int:
    """Width in bits of a load/store opcode: 'LDG.E.128.CONSTANT' -> 128, 'STG.E.U16' -> 16,
    'LDG.E' -> 32 (cache hints such as LTC128B are not widths)."""
    widths = [_WIDTH_TOKENS[t] for t in opcode.split(".")[1:] if t in _WIDTH_TOKENS]
    return max(widths) if widths else 32


def parse_sass(text: str) -> list[SassFunction]:
    """The functions of a ``cuobjdump --dump-sass`` listing, with their memory instructions."""
    functions: list[SassFunction] = []
    arch = "?"
    current: Optional[SassFunction] = None
    for line in text.splitlines():
        match = re.match(r"\s*(?:arch = |code for )(sm_\w+)", line)
        if match:
            arch = match.group(1)
            continue
        match = re.match(r"\s*Function : (\S+)", line)
        if match:
            current = SassFunction(match.group(1), arch)
            functions.append(current)
            continue
        match = _INSTRUCTION.match(line)
        if current is None or match is None:
            continue
        opcode, operands = match.groups()
        head = opcode.split(".")[0]
        if head in ("LDG", "LDGSTS"):
            current.loads[access_bits(opcode)] += 1
        elif head == "STG":
            current.stores[access_bits(opcode)] += 1
        elif head in ("LDL", "STL"):
            current.local += 1
        elif head.startswith(("UCGABAR", "CGABAR")):
            current.cluster_barriers += 1
        elif head == "MAPA":
            current.mapa += 1
        elif head in ("LD", "ST", "ATOM", "RED"):
            current.generic += 1
        if "SR_SWINHI" in operands:
            current.shared_window = True
    return functions


def template_args(name: str) -> tuple[str, list[str]]:
    """'plane_rows_kernel<Op<float>, 4>' -> ('plane_rows_kernel', ['Op<float>', '4'])."""
    start = name.find("<")
    if start < 0 or not name.endswith(">"):
        return name, []
    args, depth, begin = [], 0, start + 1
    for i, ch in enumerate(name[start + 1:-1], start + 1):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(name[begin:i].strip())
            begin = i + 1
    args.append(name[begin:-1].strip())
    return name[:start], args


def sm_name(arch: str) -> str:
    """'9.0' -> 'sm_90', '9.0a' -> 'sm_90a' (the first entry of an arch list, without +PTX)."""
    first = build.normalize_arch(arch).split(";")[0].removesuffix("+PTX")
    return "sm_" + first.replace(".", "")


def narrow_by_design(family: str, element_bytes: int, vector: int) -> Optional[str]:
    """Why a vector path narrower than 16 bytes is intended, or None (then it fails)."""
    if "cols" in family and element_bytes == 2 and vector * element_bytes == 8:
        return NARROW_COLS_REASON
    return None


# ---------------------------------------------------------------------------- checks
def check_kernel(fn: SassFunction, name: str, info: Optional[build.KernelInfo]) -> KernelCheck:
    """The report's row for one kernel: its SASS ``fn``, demangled ``name`` and ptxas ``info``."""
    row = KernelCheck(name, fn.name, fn.arch, info, max(fn.loads, default=0),
                      max(fn.stores, default=0), fn.local, "aux", "cluster" in name)
    if fn.local:
        row.problems.append(f"{fn.local} LDL/STL")
    if info is None:
        row.problems.append("not in the ptxas log")
    elif info.spill_stores or info.spill_loads:
        row.problems.append(f"spills {info.spill_stores}/{info.spill_loads} B")
    if row.cluster and int(re.sub(r"\D", "", fn.arch) or 0) < 90:
        row.note = "cluster kernel: a stub before sm_90"
        return row
    if row.cluster:
        if not fn.cluster_barriers:
            row.problems.append("cluster kernel without cluster barrier (UCGABAR)")
        if not fn.dsmem:
            row.problems.append("cluster kernel without DSMEM access (MAPA / SR_SWINHI)")
    family, args = template_args(name)
    if family in NOT_VECTOR_WIDTH or not args or not args[-1].isdigit():
        row.note = "aux" + (", cluster" if row.cluster else "")
        return row
    vector = int(args[-1])
    row.kind = "vector" if vector > 1 else "scalar"
    op, _, storage = args[0].partition("<")
    storage = storage.rstrip(">").strip() if storage else op
    element = ELEMENT_BYTES.get(storage)
    if element is None:
        row.problems.append(f"unknown storage type {storage!r}")
        return row
    if vector == 1:
        row.note = "scalar fallback, V=1" + (", cluster" if row.cluster else "")
        return row
    want = 8 * vector * element
    if fn.loads[want] == 0 or row.load_bits < want:
        row.problems.append(f"widest global load {row.load_bits} bits, want {want} (V={vector})")
    if op not in READ_ONLY_OPS and (fn.stores[want] == 0 or row.store_bits < want):
        row.problems.append(f"widest global store {row.store_bits} bits, want {want} (V={vector}; "
                            f"an op that writes no big tensor belongs in sass.READ_ONLY_OPS)")
    reason = narrow_by_design(family, element, vector) if want < 128 else None
    if want < 128 and reason is None:
        row.problems.append(f"vector path of {want} bits, not 128 (V={vector} x {element} B)")
    notes = [f"{want}-bit by design" if reason else ""] + (["cluster"] if row.cluster else [])
    row.note = ", ".join(n for n in notes if n)
    return row


def check_sass(sass_text: str, kernels: Optional[list], arch: str = REPORT_ARCH,
               demangle: Optional[Callable[[list[str]], list[str]]] = None,
               so: Optional[Path] = None) -> Report:
    """Check every function of ``arch`` (e.g. '9.0': sm_90 and sm_90a) in ``sass_text`` against
    the ptxas ``kernels`` ([KernelInfo] of the build log; None: no log). ``demangle``: mangled ->
    short names (default :func:`build.demangle`, c++filt)."""
    demangle = demangle or build.demangle
    sm = sm_name(arch)
    functions = [f for f in parse_sass(sass_text) if f.arch.rstrip("a") == sm.rstrip("a")]
    report = Report(so, sm, [])
    if not functions:
        report.notes.append(f"no {sm} code in the extension: build it for {arch}")
        return report
    by_name = {(k.mangled, k.arch): k for k in kernels or []}
    seen = set()
    for fn, name in zip(functions, demangle([f.name for f in functions])):
        if name.startswith("_Z"):
            report.notes.append("kernel names could not be demangled (c++filt not found)")
            return report
        row = check_kernel(fn, name, by_name.get((fn.name, fn.arch)))
        if kernels is None:  # no log: the spill check cannot be made
            row.problems = [p for p in row.problems if p != "not in the ptxas log"]
        key = (fn.name, row.verdict, row.load_bits, row.store_bits, row.local)
        if key not in seen:  # a template instantiated in two sources: one row
            seen.add(key)
            report.checks.append(row)
    if kernels is None:
        report.notes.append("no ptxas log (ahead-of-time build?): spills were not checked")
    return report


def format_report(report: Report) -> str:
    """The table and the summary."""
    rows = [("kernel", "regs", "spill st/ld", "stack", "ld bits", "st bits", "LDL/STL", "verdict")]
    for c in report.checks:
        info = c.info
        rows.append((c.name, str(info.registers) if info else "?",
                     f"{info.spill_stores}/{info.spill_loads}" if info else "?",
                     str(info.stack) if info else "?", str(c.load_bits or "-"),
                     str(c.store_bits or "-"), str(c.local), c.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  " + "  ".join(f"{r[i]:<{widths[i]}}" if i == 0 else f"{r[i]:>{widths[i]}}"
                              for i in range(len(widths))) + "  " + r[-1] for r in rows]
    checks = report.checks
    kinds = Counter(c.kind for c in checks)
    narrow = [c for c in checks if "by design" in c.note]
    failed = [c for c in checks if not c.ok]
    lines.append(
        f"  {len(checks)} {report.arch} kernels in {report.so or '-'}: {kinds['vector']} vector "
        f"path ({kinds['vector'] - len(narrow)} at 128 bits, {len(narrow)} narrower by design), "
        f"{kinds['scalar']} scalar fallback (V=1), {kinds['aux']} auxiliary; "
        f"{sum(c.cluster for c in checks)} cluster kernels; "
        f"{sum(1 for c in checks if c.local)} with LDL/STL; "
        f"{sum(1 for c in checks if c.info and (c.info.spill_stores or c.info.spill_loads))} "
        f"spilling; {sum(1 for c in checks if c.info and c.info.stack)} with a stack frame")
    if narrow:
        lines.append(f"  narrower by design: {NARROW_COLS_REASON}")
    lines += [f"  problem: {note}" for note in report.notes]
    lines.append(f"  report: {'PASS' if report.ok else 'FAIL'}"
                 + (f" ({len(failed)} kernels fail)" if failed else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tools
def find_cuobjdump() -> Optional[str]:
    """cuobjdump from $CUDA_HOME/$CUDA_PATH, PATH, nvcc's folder, /usr/local/cuda, else the copy
    in Triton's wheel (``triton/backends/nvidia/bin``); None when there is none."""
    candidates = [Path(root, "bin", "cuobjdump") for root in
                  (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if root]
    found = shutil.which("cuobjdump")
    candidates += [Path(found)] if found else []
    nvcc = environment.find_nvcc()
    candidates += [Path(nvcc).resolve().parent / "cuobjdump"] if nvcc else []
    candidates.append(Path("/usr/local/cuda/bin/cuobjdump"))
    spec = importlib.util.find_spec("triton")
    for base in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(base, "backends", "nvidia", "bin", "cuobjdump"))
    return next((str(p) for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def dump_sass(so: Path, cuobjdump: str, arch: str = REPORT_ARCH) -> str:
    """``cuobjdump --dump-sass`` of the cubins for ``arch`` in ``so``."""
    sm = sm_name(arch)
    try:
        out = subprocess.run([cuobjdump, "--dump-sass", "-arch", sm, str(so)],
                             capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SassError(f"could not run {cuobjdump}: {exc}") from exc
    if out.returncode != 0:
        raise SassError(f"{cuobjdump} --dump-sass {so} failed (exit {out.returncode}): "
                        f"{(out.stderr or out.stdout).strip()[-500:]}")
    return out.stdout


def report(so: Path, log: Optional[Path], arch: str = REPORT_ARCH) -> Report:
    """Disassemble ``so`` and check its ``arch`` kernels against the ptxas report in ``log``.
    Raises :class:`SassError` when cuobjdump is missing or fails."""
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        raise SassError("cuobjdump not found (not in $CUDA_HOME/bin, PATH, /usr/local/cuda/bin, "
                        "nor in Triton's wheel): install the CUDA toolkit's cuobjdump or "
                        "`pip install triton`, which ships one")
    kernels = build.parse_ptxas(log.read_text(errors="replace")) if log else None
    return check_sass(dump_sass(so, cuobjdump, arch), kernels, arch, so=so)
