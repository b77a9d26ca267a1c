"""The memory-traffic report (``stylegan-fast bench --traffic``): bytes moved against the minimum.

Each op runs through its public entry point on the ``triton`` backend, with CPU tensors, in
Triton's interpreter, and :mod:`.traffic_meter` counts the bytes every program loads and stores.
A case is an op, dtype, layout (NCHW or channels_last) and shape, in one of two modes:

* ``fwd``: inference, the forward under ``torch.no_grad()`` (direction ``infer``);
* ``fwd+bwd``: training, the forward with gradients wanted (``fwd``), then, measured apart, the
  backward that autograd runs for a fixed random dy (``bwd``).

Each direction is printed against the op's minimum (:func:`.op_cases.minimum_traffic`: every
input read once, every output, gradient and saved state written once, noise drawn from a seed
free), with the ratio moved / minimum and every tensor moved more than its minimum ("x read
2.00x"; scratch such as per-program partials, and ``unattributed`` bytes if any, by size). Only
kernel traffic counts: torch operations between kernels (reducing partials) are not measured.

The shapes are the StyleGAN generator's epilogue layers from 4x4 to 1024x1024 with N and C scaled
down (an interpreted program costs ~5-10 ms), plus a few with the real 512 channels.
Measured (Triton 3.8): bias_act and noise_inject move their minimum (1.00x) at every size;
style_epilogue and adain too while one program holds a whole plane: NCHW planes up to 16K pixels
(128x128), channels_last planes up to 4096 / C pixels (C rounded up to a power of two: 32x32 with
C = 2 or 3, only 4x4 with 512 channels). Larger planes are read twice, statistics then output:
1.50x forward (x read twice) and 1.67x backward (x and dy read twice), the two-sweep ceiling of
the Triton kernels. Below ~16x16 small tensors add a few percent (a [C] bias read by every
program, per-program partials, mean and rstd written even without a gradient).

The kernels must have been decorated under the interpreter (``TRITON_INTERPRET=1`` before
``stylegan_fast.ops.triton`` is imported); where this process cannot meter them (a GPU machine,
or the kernels already compiled), the report runs in a subprocess with the interpreter on.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from .. import environment, ops
from ..errors import UserError
from .op_cases import (
    EPILOGUE_OPS,
    MODES,
    OP_SPECS,
    Case,
    make_inputs,
    minimum_traffic,
)
from .records import append_jsonl, error_summary
from .table import Column, table_header, table_row
from .traffic_meter import TensorTraffic, TrafficMeter, interpreter_active, metering

RESOLUTIONS = (4, 8, 16, 32, 64, 128, 256)  # the generator's layers: every op, dtype, layout
LAYOUTS = ("NCHW", "channels_last")
DEFAULT_DTYPES = ("float32", "bfloat16")

COLUMNS = (Column("op", 14, "op"), Column("dir", 5, "direction"), Column("dtype", 8, "dtype"),
           Column("layout", 13, "layout"), Column("shape", 14, "shape"),
           Column("KiB moved", 10, "moved_kib", ".1f"), Column("KiB min", 10, "min_kib", ".1f"),
           Column("ratio", 6, "ratio", ".2f"), Column("progs", 5, "programs", "d"),
           Column("moved more than the minimum", 0, "beyond"))


def layer_shape(resolution: int) -> tuple:
    """A generator layer's [N, C, H, W] at ``resolution``, N and C scaled down (odd C where the
    planes are small, fewer programs where they are large)."""
    return (2, 3, resolution, resolution) if resolution <= 64 else (1, 2, resolution, resolution)


@dataclass(frozen=True)
class TrafficCase:
    """One case of the report: an op at a dtype, layout and shape, inference or training."""
    op: str
    dtype: str
    layout: str
    shape: tuple
    mode: str  # fwd (inference) or fwd+bwd (training)

    def inputs(self):
        case = Case(self.op, "triton", self.dtype, self.shape, self.mode, "cpu")
        return make_inputs(case, channels_last=self.layout == "channels_last")


def _extra_cases() -> tuple:
    """Beyond the scaled-down layers: style_epilogue training in float32 at the top layer (NCHW,
    ~45 s), and with the generator's real 512 channels where planes are small (a channels_last
    tile holds 4096 / C pixels, so there C decides whether a plane takes two sweeps)."""
    top = TrafficCase("style_epilogue", "float32", "NCHW", (1, 2, 1024, 1024), "fwd+bwd")
    return (top,) + tuple(TrafficCase("style_epilogue", "float32", layout, (1, 512, r, r),
                                      "fwd+bwd") for layout in LAYOUTS for r in (4, 8, 16))


def make_cases(op_names=EPILOGUE_OPS, dtypes=DEFAULT_DTYPES, modes=MODES, shapes=None) -> list:
    """The cases of these ops, dtypes and modes in both layouts, in report order; ``shapes``
    None: the generator's layers (:func:`layer_shape` of :data:`RESOLUTIONS`) and the cases of
    :func:`_extra_cases` that the choice includes."""
    cases = []
    for op in op_names:
        for dtype in dtypes:
            for layout in LAYOUTS:
                cases += [TrafficCase(op, dtype, layout, tuple(shape), mode)
                          for shape in shapes or [layer_shape(r) for r in RESOLUTIONS]
                          for mode in modes]
                if shapes is None:
                    cases += [c for c in _extra_cases() if c.mode in modes
                              and (c.op, c.dtype, c.layout) == (op, dtype, layout)]
    return cases


# ---------------------------------------------------------------- measuring
def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def _size(nbytes: int) -> str:
    return f"{nbytes} B" if nbytes < 1024 else f"{nbytes / 1024:.1f} KiB"


def beyond_minimum(traffic: dict[str, TensorTraffic], minimum: dict) -> list[str]:
    """What moved more than the minimum, most bytes first: ``'x read 2.00x'`` for a tensor of the
    minimum, ``'part written 96 B'`` for one outside it (scratch, ``unattributed``)."""
    items = []
    for name, moved in traffic.items():
        least_read, least_written = minimum.get(name, (0, 0))
        for verb, count, least in (("read", moved.read, least_read),
                                   ("written", moved.written, least_written)):
            if count > least:
                amount = _times(count / least) if least else _size(count)
                items.append((count - least, f"{name} {verb} {amount}"))
    return [text for _, text in sorted(items, key=lambda item: -item[0])]


def _record(case: TrafficCase, direction: str, meter: TrafficMeter, names: dict,
            minimum: dict) -> dict:
    traffic = meter.traffic(names)
    least = sum(read + written for read, written in minimum.values())
    return {
        "op": case.op, "direction": direction, "dtype": case.dtype, "layout": case.layout,
        "shape": list(case.shape), "bytes": meter.total, "min_bytes": least,
        "ratio": meter.total / least if least else None, "kernels": meter.launches,
        "programs": meter.programs, "beyond": beyond_minimum(traffic, minimum),
        "tensors": {name: {"read": t.read, "written": t.written, "size": t.nbytes}
                    for name, t in traffic.items()},
        "minimum": {name: {"read": r, "written": w} for name, (r, w) in minimum.items()},
        "error": None,
    }


def measure(case: TrafficCase) -> list[dict]:
    """The records of ``case``: one (``infer``) for mode fwd, two (``fwd``, ``bwd``) for
    fwd+bwd. Needs the interpreter (:func:`.traffic_meter.metering`)."""
    inputs = case.inputs()
    fn = OP_SPECS[case.op].public
    names = {name: t for name, t in inputs.kwargs.items() if isinstance(t, torch.Tensor)}
    with ops.use_backend("triton"):
        if case.mode == "fwd":
            with torch.no_grad(), metering() as meter:
                y = fn(**inputs.kwargs)
            return [_record(case, "infer", meter, {**names, "y": y},
                            minimum_traffic(inputs, "fwd"))]
        with metering() as forward:
            y = fn(**inputs.kwargs)
        dy = torch.randn_like(y)  # y's layout; the traffic does not depend on the values
        with metering() as backward:
            y.backward(dy)
    grads = {f"d{name}": t.grad for name, t in inputs.grad_inputs.items()}
    return [_record(case, "fwd", forward, {**names, "y": y}, minimum_traffic(inputs, "fwd")),
            _record(case, "bwd", backward, {**names, "dy": dy, **grads},
                    minimum_traffic(inputs, "bwd"))]


def measure_or_error(case: TrafficCase) -> list[dict]:
    """Like :func:`measure`, but a failing case comes back as one record with ``error``."""
    try:
        return measure(case)
    except Exception as exc:
        return [{"op": case.op, "direction": "infer" if case.mode == "fwd" else "fwd+bwd",
                 "dtype": case.dtype, "layout": case.layout, "shape": list(case.shape),
                 "error": error_summary(exc)}]


# ---------------------------------------------------------------- the command
def _row(record: dict, most: int = 4) -> dict:
    """The printed row of a record: KiB, and the first ``most`` items beyond the minimum."""
    if record["error"]:
        return record
    beyond = record["beyond"]
    if len(beyond) > most:
        beyond = beyond[:most] + [f"+{len(beyond) - most} more"]
    return dict(record, moved_kib=record["bytes"] / 1024, min_kib=record["min_bytes"] / 1024,
                beyond=", ".join(beyond))


def run_report(cases: list, jsonl=None, budget_seconds=None) -> list[dict]:
    """Measure, print and (to ``jsonl``) append the records of ``cases`` in this process."""
    facts = environment.versions()
    print(f"stylegan-fast bench --traffic: Triton {facts['triton']} interpreter, torch "
          f"{facts['torch']}, CPU tensors; {len(cases)} cases")
    print("minimum: every input read once, every output, gradient and saved state written once "
          "(stylegan_fast/bench/op_cases.py); ratio = moved / minimum\n")
    print(table_header(COLUMNS), flush=True)
    start, records = time.monotonic(), []
    for done, case in enumerate(cases):
        if budget_seconds is not None and time.monotonic() - start > budget_seconds:
            print(f"budget of {budget_seconds:g} s exceeded: skipped {len(cases) - done} cases")
            break
        for record in measure_or_error(case):
            record.update(triton=facts["triton"], torch=facts["torch"])
            records.append(record)
            print(table_row(_row(record), COLUMNS), flush=True)
            if jsonl:
                append_jsonl(jsonl, record)
    errors = sum(r["error"] is not None for r in records)
    print(f"\n{len(records)} rows in {time.monotonic() - start:.1f} s, {errors} failed")
    return records


def _interpreter_here() -> bool:
    """Whether this process can meter the kernels: they are (or, with no GPU and none imported
    yet, will be: the interpreter is turned on here) decorated under the interpreter."""
    if interpreter_active():
        return True
    if torch.cuda.is_available() or "stylegan_fast.ops.triton" in sys.modules:
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    ops.backends.forget_probes("triton")
    return True


def _in_subprocess(selection: dict) -> int:
    """Run the report of ``selection`` (:func:`_report`'s arguments) in a fresh process with the
    interpreter on (UserError here if Triton is not installed at all)."""
    if importlib.util.find_spec("triton") is None:
        raise UserError("--traffic: the triton backend is unavailable: Triton is not installed")
    print("(the Triton kernels of this process are compiled, not interpreted: running the report "
          "in a subprocess with TRITON_INTERPRET=1)", flush=True)
    env = dict(os.environ, TRITON_INTERPRET="1")
    command = [sys.executable, "-m", __name__, json.dumps(selection)]
    return subprocess.run(command, env=env).returncode


def _report(op_names, dtypes, modes, shapes, jsonl, budget_seconds) -> int:
    """The report in this process: 0, or 1 if a case failed (UserError: no triton)."""
    status = ops.available_backends("cpu")["triton"]
    if not status.available:
        raise UserError(f"--traffic: the triton backend is unavailable: {status.reason}")
    records = run_report(make_cases(op_names, dtypes, modes, shapes), jsonl, budget_seconds)
    return 1 if any(r["error"] for r in records) else 0


def main(args: argparse.Namespace) -> int:
    """``stylegan-fast bench --traffic``: 0, 1 if a case failed, 2 on a usage error."""
    # The resampling ops and filtered_lrelu gather each output's taps (cached on a GPU): bytes
    # loaded per program would count every tap, so the report covers the epilogue ops only
    # (their minimum traffic still gives the op bench's GB/s: op_cases.minimum_traffic).
    op_names, modes = args.ops or list(EPILOGUE_OPS), args.modes or list(MODES)
    for flag, chosen, allowed in (("ops", op_names, EPILOGUE_OPS), ("modes", modes, MODES)):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise UserError(f"--traffic --{flag}: unknown {', '.join(unknown)}; choose from "
                            f"{', '.join(allowed)}")
    selection = dict(op_names=op_names, dtypes=args.dtypes or list(DEFAULT_DTYPES), modes=modes,
                     shapes=args.shapes, jsonl=args.jsonl, budget_seconds=args.budget_seconds)
    return _report(**selection) if _interpreter_here() else _in_subprocess(selection)


if __name__ == "__main__":  # the subprocess of _in_subprocess
    sys.exit(_report(**json.loads(sys.argv[1])))
