"""pytest-benchmark suite over the op benchmark cases of :mod:`stylegan_fast.bench.op_cases`.

The smoke preset on CPU, the gpu preset when CUDA is available. Each test first checks the backend
under test against the op's plain definition (its ``*_reference`` function), then times it: the
CUDA-event median (call time), the kernel time from a CUDA-graph replay (``kernel_ms``, None on
CPU; docs/benchmarks.md), GB/s and % of the copy bandwidth of each, peak memory and speedups go
to ``benchmark.extra_info``. Set ``STYLEGAN_FAST_BENCH_JSONL=path`` to also append the result
records to a JSON Lines file.
"""
from __future__ import annotations

import os

import pytest
import torch

from stylegan_fast.bench import op_bench
from stylegan_fast.bench.baselines import default_backends
from stylegan_fast.bench.op_cases import (
    OP_SPECS,
    OPS,
    PRESETS,
    make_cases,
    make_inputs,
    op_function,
)
from stylegan_fast.bench.records import append_jsonl, fill_speedups
from stylegan_fast.bench.runner import default_preset
from stylegan_fast.bench.timing import copy_bandwidth_gbps, default_device, synchronize

JSONL_ENV_VAR = "STYLEGAN_FAST_BENCH_JSONL"
DEVICE = default_device()
PRESET = PRESETS[default_preset(DEVICE)]
CASES = make_cases(OPS, default_backends(DEVICE), PRESET.dtypes, PRESET.shapes_for, PRESET.modes,
                   DEVICE)
TOLERANCES = {"float32": {"rtol": 1e-4, "atol": 1e-4},
              "bfloat16": {"rtol": 2e-2, "atol": 2e-2},
              "float16": {"rtol": 2e-3, "atol": 2e-3}}
_BASELINE_MS: dict = {}  # medians of the eager/compile cases measured so far, for speedups


@pytest.fixture(scope="module")
def copy_gbps() -> float:
    return copy_bandwidth_gbps(DEVICE)


def outputs_and_grads(case, fn) -> dict:
    """``fn``'s output and, for fwd+bwd, its input gradients, on fixed inputs with an explicit
    noise map (so that backends that draw their own noise can be compared)."""
    inputs = make_inputs(case, explicit_noise=True, seed=1)
    y = fn(**inputs.kwargs)
    if case.mode == "fwd":
        return {"y": y}
    gen = torch.Generator(device=case.device).manual_seed(2)
    y.backward(torch.randn(y.shape, generator=gen, device=case.device).to(y.dtype))
    return {"y": y, **{f"d{name}": t.grad for name, t in inputs.grad_inputs.items()}}


def check_against_reference(case) -> None:
    """The backend under test (``eager`` included: the public op on that backend) matches the
    op's plain definition, called directly."""
    expected = outputs_and_grads(case, OP_SPECS[case.op].reference)
    actual = outputs_and_grads(case, op_function(case.op, case.backend))
    assert actual.keys() == expected.keys()
    for name, value in actual.items():
        torch.testing.assert_close(value, expected[name], **TOLERANCES[case.dtype],
                                   msg=lambda m, name=name: f"{case.name}: {name}: {m}")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_op_benchmark(benchmark, case, copy_gbps):
    check_against_reference(case)
    runner = op_bench.prepare(case)
    record = op_bench.measure(case, runner, PRESET.reps, PRESET.warmup, copy_gbps)
    fill_speedups(record, case, _BASELINE_MS)
    assert record["median_ms"] > 0 and record["gbps"] > 0
    benchmark.group = f"{case.op} {case.dtype} {'x'.join(map(str, case.shape))} {case.mode}"
    benchmark.extra_info.update(record)
    if os.environ.get(JSONL_ENV_VAR):
        append_jsonl(os.environ[JSONL_ENV_VAR], record)

    def synchronized_step():
        runner.step()
        synchronize(case.device)

    benchmark.pedantic(synchronized_step, setup=runner.reset, rounds=PRESET.reps,
                       warmup_rounds=PRESET.warmup)
