"""The result record of a case, its speedups over the baselines, and JSON Lines files of records.

A record is a flat dict (docs/benchmarks.md, "Record fields"): the case (``op``, ``backend``,
``dtype``, ``shape``, ``mode``), what was measured (``median_ms``, ``gbps``, ``pct_peak_bw``,
``peak_mem_mb``, and one ``speedup_vs_<baseline>`` per baseline), where (``device``, ``gpu``,
``torch``, ``triton``, ``cuda``, ``date``) and ``error`` (None, or why the case failed). Op records
add the kernel time (``kernel_ms``, ...), model and max-batch records their own keys; the host
overhead benchmark's records say ``benchmark: "overhead"`` (the others have no ``benchmark``:
None). Records written before the ``eager`` backend existed named that baseline ``ref``
(``speedup_vs_ref``): :func:`load_records` reads them under the new name.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Callable

import torch

from .. import environment
from ..errors import UserError
from ..ops.backends import EAGER
from .baselines import BASELINES

# What identifies a case in a results file (a case measured again replaces the earlier record).
# A field a record lacks counts as None: ``networks`` (op records), ``benchmark`` (every record
# but the overhead benchmark's, so those never replace an op-bench record of the same case).
KEY_FIELDS = ("op", "backend", "dtype", "shape", "mode", "device", "networks", "benchmark")


class RecordsError(UserError):
    """A results file that cannot be read: missing, unreadable, or not JSON Lines."""


def format_shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def new_record(case) -> dict:
    """The result record of ``case`` (anything with op, backend, dtype, shape, mode and device:
    an op case or a model case) with nothing measured yet."""
    facts = environment.versions()
    on_gpu = torch.device(case.device).type == "cuda"
    return {
        "op": case.op, "backend": case.backend, "dtype": case.dtype, "shape": list(case.shape),
        "mode": case.mode, "median_ms": None, "gbps": None, "pct_peak_bw": None,
        "peak_mem_mb": None, **{f"speedup_vs_{baseline}": None for baseline in BASELINES},
        "device": case.device, "gpu": facts["gpu"] if on_gpu else None, "torch": facts["torch"],
        "triton": facts["triton"], "cuda": facts["cuda"],
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(), "error": None,
    }


def error_summary(exc: BaseException) -> str:
    """``'TypeName: first line of the message'``, at most 300 characters."""
    lines = str(exc).strip().splitlines() or [""]
    return f"{type(exc).__name__}: {lines[0]}"[:300]


def measure_or_error(case, measure_case: Callable[[], dict]) -> dict:
    """``measure_case()``, or if it raises (e.g. out of memory), the case's record with
    ``error`` set: one failing case must not end the run."""
    try:
        return measure_case()
    except Exception as exc:
        message = error_summary(exc)
    if torch.device(case.device).type == "cuda":
        torch.cuda.empty_cache()
    record = new_record(case)
    record["error"] = message
    return record


def fill_speedups(record: dict, case, baseline_ms: dict) -> None:
    """Set the record's speedups over the baselines of its group measured so far (and remember
    its median in ``baseline_ms`` if it is a baseline)."""
    median = record["median_ms"]
    if case.backend in BASELINES and median is not None:
        baseline_ms[(case.group, case.backend)] = median
    for baseline in BASELINES:
        base = baseline_ms.get((case.group, baseline))
        record[f"speedup_vs_{baseline}"] = base / median if base and median else None


def append_jsonl(path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def upgrade_record(record: dict) -> dict:
    """A record in today's format: one written before the ``eager`` backend existed (it has
    ``speedup_vs_ref``) called the eager baseline ``ref``; it is renamed ``eager``."""
    if "speedup_vs_ref" not in record:
        return record
    record = dict(record)
    record[f"speedup_vs_{EAGER}"] = record.pop("speedup_vs_ref")
    if record.get("backend") == "ref":
        record["backend"] = EAGER
    return record


def load_records(paths) -> list[dict]:
    """The records of JSON Lines files, upgraded to today's format; a case measured more than
    once keeps its last record. Raises :class:`RecordsError`."""
    latest = {}
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise RecordsError(f"cannot read {path}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordsError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise RecordsError(f"{path}:{number}: not a record (a JSON object)")
            record = upgrade_record(record)
            latest[tuple(json.dumps(record.get(k)) for k in KEY_FIELDS)] = record
    return list(latest.values())
