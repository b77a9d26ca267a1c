"""The host overhead benchmark (``stylegan-fast bench --overhead``): each op's time per call.

On a tiny tensor an op's kernels cost next to nothing, so its time per call is what the host
spends: Python, argument checks, backend selection, the autograd boundary, dispatch and launches.
For every op, dtype, shape (default one tiny shape, :data:`DEFAULT_SHAPE`) and mode (``fwd``: the
op call; ``fwd+bwd``: the op call and ``torch.autograd.grad`` of its output with a fixed dy over
its inputs), each backend is timed the way a user calls it, with
``torch.utils.benchmark.Timer(...).blocked_autorange`` and the process's threads. The backend
that an op picks by default here (``ops.resolve_backend``) is called with no ``use_backend``
block, as a user calls it; every other one inside ``use_backend(name)`` entered once around the
timing (not per call). Each fused backend is timed twice: its ordinary (eager fast) path, and
through the ``torch.library`` custom op (``stylegan_fast.ops.custom_ops_only()``, the
path tracing takes, and the only one before the fast path existed). The timings of one group
(same op, dtype, shape and mode) take turns in :data:`ROUNDS` rounds of ``MIN_RUN_TIME / ROUNDS``
seconds each, so that a change of load on a shared machine hits them alike; a host time is the
median per-call time of all blocks of its rounds.

Each record is the op bench's (:func:`.records.new_record`) with ``benchmark: "overhead"``,
``host_us``, ``custom_op_host_us``, ``host_vs_eager`` and ``custom_op_vs_eager`` (this backend's
time over the ``eager`` backend's, same op, dtype, shape and mode, same run), ``default_backend``
and ``threads``; ``median_ms`` is ``host_us`` in ms. For CPU tensors the calling thread's CPU
time in the same blocks is recorded too (``host_cpu_us``, ``host_cpu_vs_eager``,
``custom_op_host_cpu_us``, ``custom_op_cpu_vs_eager``): waiting for a core on a busy machine does
not inflate it. After the table, one verdict line per op and fused backend against
:data:`FWD_LIMIT` and :data:`FWD_BWD_LIMIT` (issue 32); the exit status is 1 only if a case
failed, whatever the verdicts.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import environment, ops
from ..errors import UserError
from ..ops.backends import EAGER
from .baselines import BASELINES, ON_REQUEST, backend_context, check_available, known_backends
from .op_cases import (
    MODES,
    OP_SPECS,
    OPS,
    Case,
    _compiled_public,
    canonical_dtype,
    make_cases,
    make_inputs,
    output_shape,
)
from .records import error_summary, new_record
from .runner import exit_status, run_cases, select
from .table import CASE_COLUMNS, Column
from .timing import host_times_us

BENCHMARK = "overhead"
DEFAULT_SHAPE = (1, 2, 4, 4)  # every op, the resampling ones too (downsample2d: 2x2 out)
DEFAULT_DTYPE = "float32"
MIN_RUN_TIME = 0.3  # seconds of blocked_autorange per timing, all rounds; tests make it smaller
ROUNDS = 3  # the timings of a group take turns, this many times
WARMUP_CALLS = 3  # untimed calls before a timing's first round (backend resolution, compiling)
FWD_LIMIT = 1.25  # issue 32: a fused backend's host time <= 1.25x eager's forward...
FWD_BWD_LIMIT = 1.0  # ... and <= eager's forward + backward
LIMITS = {"fwd": FWD_LIMIT, "fwd+bwd": FWD_BWD_LIMIT}

COLUMNS = CASE_COLUMNS + (Column("host us", 9, "host_us", ".2f"),
                          Column("vs eager", 8, "host_vs_eager", ".2f"),
                          Column("cpu us", 8, "host_cpu_us", ".2f"),
                          Column("cpu vs e", 8, "host_cpu_vs_eager", ".2f"),
                          Column("custom-op us", 12, "custom_op_host_us", ".2f"),
                          Column("c-op vs e", 9, "custom_op_vs_eager", ".2f"))


def default_backend(op: str, device: str):
    """The backend ``op`` runs on here when none is asked for (``ops.resolve_backend`` outside
    any ``use_backend`` block: ``STYLEGAN_FAST_BACKEND``, else auto), or None if none can."""
    try:
        return ops.resolve_backend(OP_SPECS[op].impl or op, torch.device(device))
    except ops.BackendUnavailableError:
        return None


def default_backends(op_names: list, device: str) -> list:
    """``eager``, every available fused backend that ``auto`` considers on ``device`` (on CPU:
    none), and each op's default backend (on CPU: ``ref``)."""
    statuses = ops.available_backends(device)
    device_type = torch.device(device).type
    fused = [name for name, status in statuses.items()
             if status.available and name not in BASELINES + ON_REQUEST
             and (device_type != "cpu" or name != "triton")]  # Triton's interpreter on CPU
    picked = [default_backend(op, device) for op in op_names]
    return list(dict.fromkeys([EAGER, *fused, *(b for b in picked if b)]))


def _check_flags(args: argparse.Namespace) -> None:
    """Flags of the other benchmarks that mean nothing here: a UserError, not silence."""
    others = {"model": "--model", "max_batch": "--max-batch", "traffic": "--traffic",
              "plot": "--plot", "ckpt": "--ckpt", "conv_census": "--conv-census",
              "r1_interval": "--r1-interval", "resolutions": "--resolutions", "batch": "--batch",
              "results": "--results", "preset": "--preset", "reps": "--reps",
              "warmup": "--warmup"}
    given = [flag for key, flag in others.items() if getattr(args, key, None) not in (None, False)]
    if given:
        raise UserError(f"--overhead times host time per call with torch.utils.benchmark's "
                        f"blocked_autorange on tiny tensors; it does not take {', '.join(given)} "
                        f"(--ops, --backends, --dtypes, --shapes, --modes, --device, --jsonl and "
                        f"--budget-seconds apply)")


def _selection(args: argparse.Namespace, device: str):
    """(cases,) from the flags (default: every op, one tiny float32 shape, both modes, eager and
    the fused backends); raises UserError on bad values."""
    op_names = args.ops or list(OPS)
    modes = args.modes or list(MODES)
    for flag, chosen, allowed in (("ops", op_names, OPS), ("modes", modes, MODES)):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise UserError(f"--overhead --{flag}: unknown {', '.join(unknown)}; choose from "
                            f"{', '.join(allowed)}")
    backends = args.backends or default_backends(op_names, device)
    unknown = [b for b in backends if b not in known_backends(device)]
    if unknown:
        raise UserError(f"--overhead --backends: unknown {', '.join(unknown)}; choose from "
                        f"{', '.join(known_backends(device))}")
    check_available(backends, device)
    dtypes = args.dtypes or [DEFAULT_DTYPE]
    cases = make_cases(op_names, backends, [canonical_dtype(d) for d in dtypes],
                       args.shapes or [DEFAULT_SHAPE], modes, device)
    if not cases:
        raise UserError(f"nothing to run: no backend of {', '.join(backends)} implements "
                        f"{', '.join(op_names)}")
    return (cases,)


@dataclass
class _Timing:
    """One thing timed in a group: a case's backend on its ordinary path, or (``custom``)
    through the custom op; the per-call time of every block, over the rounds."""
    case: Case
    custom: bool
    stmt: str
    names: dict
    is_default: bool
    wall_us: list = field(default_factory=list)
    cpu_us: list = field(default_factory=list)


def _timed_call(case: Case) -> tuple[str, dict]:
    """The statement a user runs for the case and its globals, on fresh tiny inputs."""
    inputs = make_inputs(case)
    fn = _compiled_public(case.op) if case.backend == "compile" else OP_SPECS[case.op].public
    names = {"fn": fn, "kwargs": inputs.kwargs}
    if case.mode == "fwd":
        return "fn(**kwargs)", names
    x = inputs.x
    names.update(grad=torch.autograd.grad, wanted=list(inputs.grad_inputs.values()),
                 dy=torch.randn(output_shape(case.op, tuple(x.shape)), dtype=x.dtype,
                                device=x.device))
    return "grad(fn(**kwargs), wanted, dy, allow_unused=True)", names


@contextlib.contextmanager
def _calling(timing: _Timing):
    """How the timing's calls are made: the default backend with no ``use_backend`` block (as a
    user calls it), any other inside one; through the custom op inside ``ops.custom_ops_only()``."""
    with contextlib.ExitStack() as stack:
        if not (timing.is_default and timing.case.backend not in BASELINES):
            stack.enter_context(backend_context(timing.case.backend))
        if timing.custom:
            stack.enter_context(ops.custom_ops_only())
        yield


def measure_group(cases: list, defaults: dict) -> dict:
    """Records of cases that differ only in backend (one group), by case: each backend on its
    ordinary path and, if fused, through the custom op, timed in :data:`ROUNDS` interleaved
    rounds of ``MIN_RUN_TIME / ROUNDS`` seconds each (a change of load on the machine then hits
    all of them alike); host time = the median per-call time of all their blocks, wall clock
    and (CPU tensors only) the calling thread's CPU time. The ratios are to the group's
    ``eager`` case. A case that fails comes back with ``error``."""
    timings, errors = [], {}
    for case in cases:
        try:
            stmt, names = _timed_call(case)
        except Exception as exc:
            errors[case] = error_summary(exc)
            continue
        is_default = defaults.get(case.op) == case.backend
        for custom in (False, True) if case.backend not in BASELINES else (False,):
            timings.append(_Timing(case, custom, stmt, names, is_default))
    for _ in range(ROUNDS):
        for timing in timings:
            if timing.case in errors:
                continue
            try:
                with _calling(timing):
                    if not timing.wall_us:  # first round: warm up
                        for _ in range(WARMUP_CALLS):
                            eval(timing.stmt, {}, timing.names)
                    times = host_times_us(timing.stmt, timing.names, MIN_RUN_TIME / ROUNDS)
                    timing.wall_us += times.wall_us
                    timing.cpu_us += times.cpu_us
            except Exception as exc:
                errors[timing.case] = error_summary(exc)
    # The autograd engine runs a CUDA backward on its own thread: CPU time only for CPU tensors.
    on_cpu = all(torch.device(c.device).type == "cpu" for c in cases)
    wall = {(t.case, t.custom): statistics.median(t.wall_us) for t in timings
            if t.case not in errors and t.wall_us}
    cpu = {(t.case, t.custom): statistics.median(t.cpu_us) for t in timings
           if on_cpu and t.case not in errors and t.cpu_us}
    eager = next((c for c in cases if c.backend == EAGER), None)

    def ratio(times: dict, case: Case, custom: bool):
        this, base = times.get((case, custom)), times.get((eager, False))
        return this / base if this and base else None

    result = {}
    for case in cases:
        record = new_record(case)
        host_us = wall.get((case, False))
        record.update(benchmark=BENCHMARK, error=errors.get(case),
                      median_ms=None if host_us is None else host_us / 1e3, host_us=host_us,
                      host_vs_eager=ratio(wall, case, False),
                      host_cpu_us=cpu.get((case, False)), host_cpu_vs_eager=ratio(cpu, case, False),
                      custom_op_host_us=wall.get((case, True)),
                      custom_op_vs_eager=ratio(wall, case, True),
                      custom_op_host_cpu_us=cpu.get((case, True)),
                      custom_op_cpu_vs_eager=ratio(cpu, case, True),
                      default_backend=defaults.get(case.op) == case.backend,
                      threads=torch.get_num_threads())
        result[case] = record
    return result


def _run_one(cases: list, defaults: dict) -> Callable[[Case], dict]:
    """``run_one`` for :func:`.runner.run_cases`: the first case of a group measures the whole
    group (:func:`measure_group`); the others take their record from it."""
    measured: dict = {}

    def run_one(case: Case) -> dict:
        if case.group not in measured:
            measured[case.group] = measure_group([c for c in cases if c.group == case.group],
                                                 defaults)
        return measured[case.group][case]
    return run_one


def _verdict(ratio, limit, what: str = "") -> str:
    """``'1.10x eager (<= 1.25 ok)'``, or why there is no ratio."""
    if ratio is None:
        return "no eager time to compare"
    return f"{ratio:.2f}x{what} (<= {limit:g} {'ok' if ratio <= limit else 'OVER'})"


def verdict_lines(records: list, defaults: dict) -> list[str]:
    """One line per op, fused backend, dtype and shape: its host time against eager's, forward
    and forward + backward, against the limits; the same for the calling thread's CPU time
    (where measured) and, without limits, through the custom op."""
    measured = [r for r in records if r["backend"] not in BASELINES]
    several = len({(r["dtype"], tuple(r["shape"])) for r in records}) > 1
    lines = []
    groups = dict.fromkeys((r["op"], r["backend"], r["dtype"], tuple(r["shape"]))
                           for r in measured)
    for op, backend, dtype, shape in groups:
        by_mode = {r["mode"]: r for r in measured
                   if (r["op"], r["backend"], r["dtype"], tuple(r["shape"]))
                   == (op, backend, dtype, shape)}
        parts, cpu, custom = [], [], []
        for mode, limit in LIMITS.items():
            record = by_mode.get(mode)
            if record is None:
                continue
            if record["error"]:
                parts.append(f"{mode} failed")
                continue
            what = "" if parts else " eager"
            parts.append(f"{mode} {_verdict(record['host_vs_eager'], limit, what)}")
            if record.get("host_cpu_vs_eager") is not None:
                ratio = record["host_cpu_vs_eager"]
                cpu.append(f"{mode} {ratio:.2f}x ({'ok' if ratio <= limit else 'OVER'})")
            if record["custom_op_vs_eager"] is not None:
                custom.append(f"{mode} {record['custom_op_vs_eager']:.2f}x")
        where = f" {dtype} {'x'.join(map(str, shape))}" if several else ""
        tag = " (default)" if defaults.get(op) == backend else ""
        line = f"{op}{where}: {backend}{tag} {', '.join(parts)}"
        if cpu:
            line += f"; thread CPU time: {', '.join(cpu)}"
        if custom:
            line += f"; through the custom op: {', '.join(custom)}"
        lines.append(line)
    return lines


def main(args: argparse.Namespace) -> int:
    """``stylegan-fast bench --overhead``."""
    _check_flags(args)
    device, cases = select(args, _selection)
    defaults = {op: default_backend(op, device) for op in dict.fromkeys(c.op for c in cases)}
    facts = environment.versions()
    print(f"stylegan-fast bench --overhead on {device} ({facts['gpu'] or 'no GPU'}): torch "
          f"{facts['torch']}, CUDA {facts['cuda']}, triton {facts['triton']}; {len(cases)} cases; "
          f"{torch.get_num_threads()} threads")
    print(f"host time per call in us: torch.utils.benchmark blocked_autorange, {ROUNDS} rounds "
          f"of {MIN_RUN_TIME / ROUNDS:g} s per timing, the backends of a case taking turns, "
          f"median of all blocks, after {WARMUP_CALLS} warm-up calls; fwd+bwd = the op and "
          f"torch.autograd.grad of its output. 'vs eager', 'vs e': this time / the eager "
          f"backend's. 'cpu us': the calling thread's CPU time in the same blocks (CPU tensors "
          f"only). "
          f"'custom-op': the same backend through its torch.library custom op "
          f"(ops.custom_ops_only()). Default backend per op: "
          + ", ".join(f"{op} {backend}" for op, backend in defaults.items()))
    if torch.device(device).type == "cpu" and torch.get_num_threads() > 1:
        print(f"NOTE: {torch.get_num_threads()} threads: on a busy machine an op that runs on "
              f"several threads (eager's convolutions) can wait for a core for milliseconds; "
              f"OMP_NUM_THREADS=1 gives steadier host times.")
    print()
    records = run_cases(cases, _run_one(cases, defaults), args, COLUMNS)
    lines = verdict_lines(records, defaults)
    if lines:
        print(f"\nhost time vs eager (limits: fwd <= {FWD_LIMIT:g}x, fwd+bwd <= "
              f"{FWD_BWD_LIMIT:g}x):")
        print("\n".join(lines))
    return exit_status(records)
