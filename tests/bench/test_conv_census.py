"""The convolution census (stylegan_fast/bench/conv_census.py) and lazy R1 in the model benchmark.

On CPU: the recorder sees every order of derivative; a step with R1 on ``eager`` (PyTorch's own
double backward of F.conv2d) runs convolutions whose kernel is a feature map, every other backend
only the layers' kernels; ``bench --model --conv-census`` and ``--r1-interval`` (smoke networks).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stylegan_fast import cli, ops
from stylegan_fast.bench import model_bench, model_steps
from stylegan_fast.bench.conv_census import (
    ConvCall,
    ConvRecorder,
    census,
    census_fields,
    format_census,
    layer_kernel,
)
from stylegan_fast.bench.model_cases import PRESETS, ModelCase
from stylegan_fast.bench.records import load_records
from stylegan_fast.models import Discriminator, Generator

SMOKE = PRESETS["smoke"]
RESOLUTION = SMOKE.resolutions[0]  # 8 px: D's blocks at 8x8 and 4x4
CPU_BACKENDS = [name for name, status in ops.available_backends("cpu").items()
                if status.available]  # eager, ref, and triton under TRITON_INTERPRET=1


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """Tiny networks: threads only make the shared CPU wait (see benchmarks/bench_models.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def r1_of_one_conv(conv) -> list:
    """The convolutions of R1 through one 3x3 layer ``conv``: forward, the input gradient kept
    differentiable, and the backward of its square into x and w."""
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    with ConvRecorder() as recorder:
        y = conv(x, w, padding=1)
        (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        dx.square().sum().backward()
    assert x.grad is not None and w.grad is not None
    return recorder.calls


def test_the_recorder_sees_forward_backward_and_double_backward():
    calls = r1_of_one_conv(F.conv2d)
    forward = calls[0]
    assert (forward.kind, forward.input_shape, forward.weight_shape) == (
        "conv", (2, 3, 8, 8), (4, 3, 3, 3))
    assert forward.macs == 2 * 4 * 8 * 8 * 3 * 3 * 3
    assert "backward" in {c.kind for c in calls}  # aten.convolution_backward
    # PyTorch's double backward: the weight-gradient term as a feature-map-sized kernel
    assert (8, 8) in {c.kernel for c in calls if c.kind == "conv"}, calls
    assert {c.thread for c in calls} == {calls[0].thread}
    lean = r1_of_one_conv(ops.conv2d)
    assert {c.kind for c in lean} == {"conv", "conv_transpose", "backward"}
    assert all(c.kernel == (3, 3) for c in lean), lean


def test_layer_kernel_is_the_largest_a_layer_runs():
    small = dict(channel_max=8)
    assert layer_kernel(Discriminator(64, **small)) == (3, 3)
    assert layer_kernel(Discriminator(128, **small)) == (4, 4)  # fused stride-2 down-conv
    # the learned 4x4 constant input is no kernel
    assert layer_kernel(Generator(8, z_dim=8, w_dim=8, mapping_layers=1, **small)) == (3, 3)
    assert layer_kernel(Generator(128, z_dim=8, w_dim=8, mapping_layers=1, **small)) == (4, 4)


@pytest.mark.parametrize("op", ["d_r1_step", "train_step"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_only_eager_runs_kernels_larger_than_the_layers(op, backend):
    case = ModelCase(op, backend, "float32", RESOLUTION, 2, "cpu", SMOKE.networks)
    step = model_steps.prepare_step(case)
    calls = census(step)
    step.check()
    fields = census_fields(calls, layer_kernel(*step.models))
    assert fields["conv_census_layer_kernel"] == [3, 3]
    assert {"conv", "backward"} <= {c.kind for c in calls}
    if backend == "eager":
        assert fields["conv_census_flagged"] > 0 and fields["conv_census_flagged_mac_share"] > 0
        assert fields["conv_census_largest_kernel"] == [RESOLUTION, RESOLUTION]  # a feature map
    else:
        assert fields["conv_census_flagged"] == 0, format_census(calls, (3, 3))
        assert fields["conv_census_largest_kernel"] == [3, 3]


def test_census_table_and_fields():
    calls = [ConvCall("convolution", "conv", (2, 3, 8, 8), (4, 3, 3, 3), (3, 3), 100, 1),
             ConvCall("convolution", "conv", (3, 2, 8, 8), (4, 2, 8, 8), (8, 8), 300, 2),
             ConvCall("convolution", "conv_transpose", (2, 4, 8, 8), (4, 3, 3, 3), (3, 3), 50, 1),
             ConvCall("convolution_backward", "backward", (2, 4, 8, 8), (4, 3, 3, 3), (3, 3),
                      50, 1)]
    assert census_fields(calls, (3, 3)) == {
        "conv_census_count": 4, "conv_census_flagged": 1, "conv_census_largest_kernel": [8, 8],
        "conv_census_layer_kernel": [3, 3], "conv_census_flagged_mac_share": 0.6}
    table = format_census(calls, (3, 3), "a step")
    lines = table.splitlines()
    assert lines[0] == "a step (layers' largest kernel 3x3)"
    rows = [line.split() for line in lines[2:6]]
    assert [row[:3] for row in rows] == [["conv", "3x3", "1"], ["conv", "8x8", "1"],
                                         ["conv_transpose", "3x3", "1"],
                                         ["backward", "3x3", "1"]]
    assert lines[3].endswith("flagged: > 3x3") and "flagged" not in lines[2]
    assert lines[6].split()[:2] == ["total", "4"]
    assert lines[7] == "flagged: 1 of 4 convolutions, 60.0% of the MACs; run on 2 threads"
    assert census_fields([], (3, 3))["conv_census_flagged_mac_share"] == 0.0


def test_model_bench_conv_census(tmp_path, capsys):
    results = tmp_path / "models.jsonl"
    assert cli.main(["bench", "--model", "--backends", "eager,ref", "--conv-census", "--reps",
                     "1", "--warmup", "0", "--jsonl", str(results)]) == 0
    out = capsys.readouterr().out
    assert "convolution census" in out and "flagged: > 3x3" in out
    records = {(r["op"], r["backend"]): r for r in load_records([results])}
    eager, ref = records["train_step", "eager"], records["train_step", "ref"]
    assert eager["conv_census_flagged"] > 0 and eager["conv_census_count"] > 0
    assert ref["conv_census_flagged"] == 0 and ref["conv_census_flagged_mac_share"] == 0
    assert "conv_census_count" not in records["generate", "eager"]


def test_model_bench_lazy_r1(tmp_path):
    results = tmp_path / "models.jsonl"
    assert cli.main(["bench", "--model", "--backends", "eager", "--r1-interval", "1,2",
                     "--reps", "1", "--warmup", "0", "--jsonl", str(results)]) == 0
    records = load_records([results])
    assert sorted(r["mode"] for r in records) == ["infer", "train", "train+r1/2"]
    assert all(r["error"] is None and r["images_per_s"] > 0 for r in records)


def test_a_lazy_r1_call_runs_its_interval_of_steps_with_r1_once(monkeypatch):
    penalties, original = [], model_steps.r1_penalty

    def counting_r1_penalty(*args, **kwargs):
        penalties.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model_steps, "r1_penalty", counting_r1_penalty)
    case = ModelCase("train_step", "eager", "float32", RESOLUTION, 2, "cpu", SMOKE.networks,
                     r1_interval=3)
    assert (case.mode, case.steps_per_call) == ("train+r1/3", 3)
    step = model_steps.prepare_step(case)
    optimizer_steps = []
    for optimizer in (step.opt_D, step.opt_G):
        optimizer.register_step_post_hook(lambda opt, *_: optimizer_steps.append(opt))
    step()
    step.check()
    assert len(penalties) == 1
    assert len(optimizer_steps) == 6


def test_lazy_r1_time_is_per_step(monkeypatch):
    """A call of N steps: ms per step is its median / N, images/s N * batch / median, and the
    reps count steps (no timing here: the timer is replaced)."""
    timed = []

    def fake_times(step, reset, device, warmup, reps):
        timed.append((warmup, reps))
        return [40.0] * reps

    monkeypatch.setattr(model_bench, "time_reps_ms", fake_times)

    class Run:
        def __call__(self):
            pass

        def check(self):
            pass

    case = ModelCase("train_step", "eager", "float32", RESOLUTION, 2, "cpu", SMOKE.networks,
                     r1_interval=4)
    record = model_bench.measure_model(case, Run(), reps=8, warmup=3)
    assert timed == [(1, 2)]
    assert record["median_ms"] == 10.0 and record["images_per_s"] == pytest.approx(200.0)
    assert record["mode"] == "train+r1/4"


def test_census_and_lazy_r1_flags_need_the_model_bench(capsys):
    assert cli.main(["bench", "--conv-census"]) == 2
    assert "--conv-census is for the model benchmark" in capsys.readouterr().err
    assert cli.main(["bench", "--r1-interval", "16"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["bench", "--model", "--r1-interval", "0"])


def load_script(name: str, monkeypatch):
    """A script of benchmarks/ as a module (in sys.modules for this test only)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_r1_step_variant_runs_the_layers_on_pytorch_convs(monkeypatch):
    """benchmarks/r1_step.py's X+F.conv2d: backend X, but PyTorch's conv double backward (so
    feature-map kernels) inside the block only."""
    r1_step = load_script("r1_step", monkeypatch)
    case = ModelCase("d_r1_step", "ref", "float32", RESOLUTION, 2, "cpu", SMOKE.networks)
    step = model_steps.prepare_step(case)
    bound = layer_kernel(*step.models)
    with r1_step.pytorch_convs():
        patched = census_fields(census(step), bound)
    assert patched["conv_census_flagged"] > 0
    assert census_fields(census(step), bound)["conv_census_flagged"] == 0
