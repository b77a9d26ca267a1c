"""Bar charts of result files (``stylegan-fast bench --plot FILE.png --results FILE.jsonl``).

One row of panels per kind of record found: ops (``stylegan-fast bench``), model steps
(``--model``: ``train_step`` / ``generate``) and ``--max-batch``. For ops and model steps, the
left panel is the speedup of each backend over the ``eager`` baseline (eager itself is the line at
1x) and the right panel the peak memory per backend (CUDA runs only); for max batch, the largest
batch and its peak memory. Failed cases are left out, and so are the host overhead benchmark's
records (``benchmark: "overhead"``, ``--overhead``: its table is the report). When a file holds
the same case more than once (appended runs), the last record counts; records of earlier
versions, which called the eager baseline ``ref``, are read under its new name
(:func:`.records.load_records`).

matplotlib is needed here only (``pip install matplotlib``, or the ``dev`` extra); it is imported
when a plot is drawn, with the non-interactive Agg backend.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from ..ops.backends import EAGER
from .baselines import BASELINES
from .model_cases import MODEL_OPS
from .records import KEY_FIELDS, format_shape, load_records

SPEEDUP = f"speedup_vs_{EAGER}"


class PlotError(UserError):
    """Something the user can fix: no matplotlib, no successful record to plot."""


def with_speedups_from_medians(records: list) -> list[dict]:
    """Copies of the records with the speedup over ``eager`` recomputed from the medians of
    ``eager`` in the same group (same case, device, GPU and networks), wherever the file holds
    one: runs that measured the backends in another order, or in separate invocations, still
    compare."""
    def group(record):
        return json.dumps([record.get(k) for k in KEY_FIELDS + ("gpu",) if k != "backend"])
    eager_ms = {group(r): r["median_ms"] for r in records
                if r["backend"] == EAGER and r.get("median_ms") and not r.get("error")}
    result = []
    for record in records:
        base, median = eager_ms.get(group(record)), record.get("median_ms")
        result.append(dict(record, **{SPEEDUP: base / median}) if base and median else record)
    return result


def _kind(record: dict) -> str:
    if record["op"] == "max_batch":
        return "max_batch"
    return "model" if record["op"] in MODEL_OPS else "ops"


def _label(record: dict) -> str:
    """What a group of bars (the same case on each backend) is called."""
    shape = format_shape(record["shape"])
    if record["op"] in MODEL_OPS:
        shape = f"{record['shape'][0]} x {record['shape'][1]}px"
    elif record["op"] == "max_batch":  # the batch is the result, not part of the case
        shape = f"{record['shape'][1]}px"
    return f"{record['op']}\n{record['dtype']} {shape} {record['mode']}"


def _grouped_bars(ax, records: list, value_key: str, backends: list, ylabel: str,
                  colours: dict) -> bool:
    """Bars of ``record[value_key]``, one cluster per case group, one colour per backend, on a
    log axis when the values span more than 20x; False (and a note in the panel) when no record
    has a value."""
    groups = list(dict.fromkeys(_label(r) for r in records))
    values = {(_label(r), r["backend"]): r.get(value_key) for r in records}
    width = 0.8 / max(len(backends), 1)
    label_bars = len(groups) * len(backends) <= 40
    drawn = []
    for i, backend in enumerate(backends):
        xs = [g + (i - (len(backends) - 1) / 2) * width for g in range(len(groups))]
        kept = [(x, values.get((label, backend))) for x, label in zip(xs, groups)]
        kept = [(x, h) for x, h in kept if h is not None]
        if not kept:
            continue
        bars = ax.bar([x for x, _ in kept], [h for _, h in kept], width, label=backend,
                      color=colours[backend])
        if label_bars:
            ax.bar_label(bars, labels=[f"{h:.3g}" if h < 1000 else f"{h:.0f}" for _, h in kept],
                         fontsize=7)
        drawn += [h for _, h in kept]
    if not drawn:
        where = " (measured on CUDA only)" if value_key == "peak_mem_mb" else ""
        ax.text(0.5, 0.5, f"no {ylabel} in these records{where}", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    positive = [h for h in drawn if h > 0]
    if positive and max(positive) > 20 * min(positive):
        ax.set_yscale("log")
    return True


def _title(records: list) -> str:
    first = records[0]
    where = first.get("gpu") or "CPU (times say nothing about GPU kernels)"
    dates = sorted({r.get("date") for r in records if r.get("date")})
    return (f"stylegan_fast benchmarks on {where}: torch {first.get('torch')}, CUDA "
            f"{first.get('cuda')}, triton {first.get('triton')}; {', '.join(dates)}")


def plot(records: list, path) -> Path:
    """Draw the charts of ``records`` into ``path`` (PNG, or any format matplotlib knows)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install matplotlib (or the project's "
                        "'dev' extra)") from None
    measured = with_speedups_from_medians([r for r in records if not r.get("error")
                                           and r.get("benchmark") != "overhead"])
    if not measured:
        raise PlotError("no successful records to plot (the --overhead benchmark's are not "
                        "plotted)")
    backends_seen = list(dict.fromkeys([*BASELINES, *(r["backend"] for r in measured)]))
    colours = {backend: f"C{i}" for i, backend in enumerate(backends_seen)}  # same in every panel
    rows = [kind for kind in ("ops", "model", "max_batch")
            if any(_kind(r) == kind for r in measured)]
    widest = max(len({_label(r) for r in measured if _kind(r) == kind}) for kind in rows)
    fig, axes = plt.subplots(len(rows), 2, squeeze=False,
                             figsize=(min(max(10, 0.5 * widest * 2), 60), 5.5 * len(rows)))
    for row, kind in zip(axes, rows):
        chosen = [r for r in measured if _kind(r) == kind]
        backends = list(dict.fromkeys(r["backend"] for r in chosen))
        if kind == "max_batch":
            _grouped_bars(row[0], chosen, "max_batch", backends, "largest batch", colours)
            row[0].set_title("largest training batch within a memory cap")
            _grouped_bars(row[1], chosen, "peak_mem_mb", backends, "peak memory (MiB)", colours)
            row[1].set_title("peak memory at that batch")
            continue
        what = "ops" if kind == "ops" else "model steps"
        others = [b for b in backends if b != EAGER]
        if _grouped_bars(row[0], chosen, SPEEDUP, others, f"speedup vs {EAGER} (x)", colours):
            row[0].axhline(1.0, color="black", linewidth=0.8)
        row[0].set_title(f"{what}: speedup over {EAGER} PyTorch (line: {EAGER})")
        _grouped_bars(row[1], chosen, "peak_mem_mb", backends, "peak memory (MiB)", colours)
        row[1].set_title(f"{what}: peak memory")
    fig.suptitle(_title(measured), fontsize=10)
    fig.tight_layout(rect=(0, 0.01, 1, 0.98))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(args: argparse.Namespace) -> int:
    sources = args.results or ([args.jsonl] if args.jsonl else [])
    if not sources:
        raise PlotError("--plot: name the results with --results FILE.jsonl")
    records = load_records(sources)
    path = plot(records, args.plot)
    print(f"{len(records)} records from {', '.join(map(str, sources))} -> {path}")
    return 0
