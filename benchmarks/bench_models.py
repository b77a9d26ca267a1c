"""pytest-benchmark suite at model level (:mod:`stylegan_fast.bench.model_bench`), and the checks
of ``--max-batch``'s search and ``--plot``.

The smoke preset on CPU (tiny networks at 8 px: seconds), the gpu preset (256 and 1024 px, official
networks) when CUDA is available. Each case runs a full training step (G and D with R1, Adam,
G_ema) or generator inference on its backend, checks what a broken step would get wrong (finite
losses, every trained parameter moved, images/s > 0), and puts the record (median ms, images/s,
peak memory, speedups) into ``benchmark.extra_info``; ``STYLEGAN_FAST_BENCH_JSONL=path`` also
appends it to a JSON Lines file. Separately, the generator on every backend must produce the same
images as the plain-PyTorch (``eager``) model, and ``--max-batch``'s search must find the largest
batch that fits.
"""
from __future__ import annotations

import math
import os
import sys

import pytest
import torch

from stylegan_fast import cli
from stylegan_fast.bench import max_batch, model_bench
from stylegan_fast.bench.baselines import BASELINES, default_backends
from stylegan_fast.bench.model_cases import MODEL_OPS, PRESETS, ModelCase, make_model_cases
from stylegan_fast.bench.model_steps import Generation, TrainingStep, prepare_step
from stylegan_fast.bench.records import append_jsonl, fill_speedups, load_records
from stylegan_fast.bench.runner import default_preset
from stylegan_fast.bench.timing import allocated_bytes, default_device, synchronize
from tests.models.helpers import randomize_zero_inits_
from tests.ops.helpers import OpNamespaces

JSONL_ENV_VAR = "STYLEGAN_FAST_BENCH_JSONL"
DEVICE = default_device()
ON_GPU = torch.device(DEVICE).type == "cuda"
PRESET = PRESETS[default_preset(DEVICE)]
BACKENDS = [b for b in default_backends(DEVICE) if b != "compile" or PRESET.compile_by_default]
CASES = make_model_cases(MODEL_OPS, BACKENDS, PRESET.dtypes, PRESET.resolutions,
                         PRESET.batch, DEVICE, PRESET.networks)
FUSED = [b for b in BACKENDS if b not in BASELINES]
_BASELINE_MS: dict = {}


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """The smoke networks are far too small to gain from threads, and on a busy 2-core machine
    OpenMP's waiting between threads turns their 25 ms steps into seconds."""
    if ON_GPU:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def trained_parameters(run) -> dict:
    """The parameters that the last step gave a gradient (the unused lower-level ToRGB/FromRGB
    layers get none at lod 0)."""
    return {f"{net}.{name}": p for net, module in (("G", run.G), ("D", run.D))
            for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_model_benchmark(benchmark, case):
    baseline = allocated_bytes(DEVICE)
    run = prepare_step(case)
    if case.op == "train_step":
        run()  # one step, so that we know which parameters train
        before = {name: p.detach().clone() for name, p in trained_parameters(run).items()}
        ema_before = next(run.G_ema.parameters()).detach().clone()
    record = model_bench.measure_model(case, run, PRESET.reps, PRESET.warmup, baseline)
    fill_speedups(record, case, _BASELINE_MS)
    assert record["error"] is None and record["median_ms"] > 0 and record["images_per_s"] > 0
    assert (record["peak_mem_mb"] is not None) == ON_GPU
    if case.op == "train_step":
        assert torch.isfinite(run.losses).all(), run.losses
        after = trained_parameters(run)
        assert any("noise_strength" in name for name in after)  # the noise path trains too
        frozen = [name for name, p in before.items() if torch.equal(p, after[name])]
        assert not frozen, f"the step left these parameters unchanged: {frozen}"
        assert not torch.equal(ema_before, next(run.G_ema.parameters()))
    else:
        assert run.output.shape == (case.batch, 3, case.resolution, case.resolution)
    benchmark.group = f"{case.op} {case.dtype} {case.batch}x{case.resolution}px"
    benchmark.extra_info.update(record)
    if os.environ.get(JSONL_ENV_VAR):
        append_jsonl(os.environ[JSONL_ENV_VAR], record)

    def synchronized_step():
        run()
        synchronize(DEVICE)

    benchmark.pedantic(synchronized_step, rounds=PRESET.reps, warmup_rounds=0)
    model_bench.release_memory(DEVICE, case.backend == "compile")


SMOKE = PRESETS["smoke"]  # the correctness check uses tiny networks everywhere


def const_noise_images(backend: str, compiler: str = "inductor") -> torch.Tensor:
    """Images of fixed latents from a tiny generator of fixed weights (biases and noise strengths
    made non-zero) with constant noise, on ``backend``."""
    res = SMOKE.resolutions[0]
    case = ModelCase("generate", backend, "float32", res, 2, DEVICE, SMOKE.networks)
    generation = Generation(case, compiler)
    randomize_zero_inits_(generation.G)
    generation.G.to(DEVICE)
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(case.batch, SMOKE.networks.latent_dim, generator=gen).to(DEVICE)
    return generation.images(z, noise_mode="const")


# compile on CPU: dynamo's tracing of the eager models with its eager backend (inductor would take
# about a minute to compile them here; on a GPU the real thing is checked).
CHECKED = [("ref", "inductor")] + [(b, "inductor") for b in FUSED if b != "ref"] + [
    ("compile", "inductor" if ON_GPU else "eager")]


@pytest.mark.parametrize("backend,compiler", CHECKED, ids=[f"{b}-{c}" for b, c in CHECKED])
def test_generator_matches_the_plain_pytorch_model(backend, compiler):
    # TF32 convolutions would round the backends' last-bit differences up to ~1e-3.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want = const_noise_images("eager")
        got = const_noise_images(backend, compiler)
    torch._dynamo.reset()
    assert got.shape == want.shape and torch.isfinite(got).all()
    scale = want.abs().max().clamp_min(1.0)
    err = (got.double() - want.double()).abs().max()
    assert err <= 1e-4 * scale, f"{backend}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("backend", ["eager", "ref"])
def test_eager_runs_the_models_in_plain_pytorch_ops_only(backend):
    """The eager baseline is a backend, not a patch of the models: a training step on it
    dispatches no custom op of ours, while the same step on ``ref`` goes through them."""
    case = ModelCase("train_step", backend, "float32", SMOKE.resolutions[0], 2, "cpu",
                     SMOKE.networks)
    step = TrainingStep(case)
    with OpNamespaces() as recorder:
        step()
    step.check()
    assert "aten" in recorder.namespaces
    assert ("stylegan_fast" in recorder.namespaces) == (backend != "eager"), recorder.namespaces


@pytest.mark.parametrize("largest", [0, 1, 2, 5, 13, 64, 100, 255, 256])
def test_largest_batch_search(largest):
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= largest

    assert max_batch.largest_batch(fits, limit=256) == largest
    assert len(tried) <= 2 * math.log2(256) + 1 and max(tried) <= 256


def test_largest_batch_search_stops_when_out_of_time():
    tried = []
    result = max_batch.largest_batch(lambda b: tried.append(b) or True, limit=256,
                                           out_of_time=lambda: len(tried) >= 3)
    assert result == 4 and tried == [1, 2, 4]


@pytest.mark.skipif(ON_GPU, reason="checks the message of a machine without a GPU")
def test_max_batch_without_a_gpu_says_so(capsys):
    assert cli.main(["bench", "--max-batch"]) == 0
    assert "needs a CUDA GPU" in capsys.readouterr().out


@pytest.mark.skipif(not ON_GPU, reason="caps GPU memory")
def test_max_batch_on_the_gpu_reaches_the_limit_for_tiny_networks(tmp_path):
    results = tmp_path / "max_batch.jsonl"
    assert cli.main(["bench", "--max-batch", "--preset", "smoke", "--resolutions", "8",
                     "--backends", "eager", "--jsonl", str(results)]) == 0
    records = load_records([results])
    assert [r["max_batch"] for r in records] == [max_batch.BATCH_LIMIT] * 2
    assert all(r["peak_mem_mb"] > 0 for r in records)


def test_model_command_rejects_op_flags(capsys):
    assert cli.main(["bench", "--model", "--shapes", "2x8x9x7"]) == 2
    assert "--shapes is for the op benchmark" in capsys.readouterr().err


# ---------------------------------------------------------------- --plot
def assert_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, (path, len(data))


def test_plot_of_a_smoke_run(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    results, png = tmp_path / "results.jsonl", tmp_path / "plot.png"
    assert cli.main(["bench", "--ops", "style_epilogue", "--backends", "eager", "--reps", "2",
                     "--warmup", "1", "--jsonl", str(results)]) == 0
    assert cli.main(["bench", "--model", "--backends", "eager", "--reps", "1", "--warmup", "0",
                     "--jsonl", str(results)]) == 0
    kinds = [r["op"] for r in load_records([results])]
    assert "style_epilogue" in kinds and "train_step" in kinds and "generate" in kinds
    assert cli.main(["bench", "--plot", str(png), "--results", str(results)]) == 0
    assert_png(png)
    assert f"-> {png}" in capsys.readouterr().out


def synthetic_records() -> list:
    """Records shaped like a GPU run's (every kind, memory, failures) to exercise the layout.
    Test data only: the numbers mean nothing."""
    base = dict(device="cuda", gpu="synthetic test data", torch="0", triton="0", cuda="0",
                date="2000-01-01", error=None, networks="official", speedup_vs_eager=None,
                speedup_vs_compile=None)
    records = []
    for i, (op, shape, mode) in enumerate([("style_epilogue", [4, 16, 1024, 1024], "fwd"),
                                           ("bias_act", [32, 512, 32, 32], "fwd+bwd"),
                                           ("train_step", [16, 256], "train"),
                                           ("generate", [4, 1024], "infer")]):
        for j, backend in enumerate(["eager", "compile", "triton", "cuda"]):
            records.append(dict(base, op=op, backend=backend, dtype="bfloat16", shape=shape,
                                mode=mode, median_ms=10.0 / (j + 1), speedup_vs_eager=j + 1.0,
                                speedup_vs_compile=(j + 1.0) / 2,
                                peak_mem_mb=100.0 * (i + 1) * (4 - j)))
    records.append(dict(records[-1], backend="cuda", dtype="float32", error="OutOfMemoryError"))
    for cap in (16, 24):
        for j, backend in enumerate(["eager", "triton"]):
            records.append(dict(base, op="max_batch", backend=backend, dtype="float32",
                                shape=[cap // 4 * (j + 1), 1024], mode=f"{cap}GB",
                                max_batch=cap // 4 * (j + 1), peak_mem_mb=cap * 900.0))
    return records


def test_plot_of_every_kind_of_record(tmp_path):
    pytest.importorskip("matplotlib")
    from stylegan_fast.bench import plot

    results = tmp_path / "results.jsonl"
    for record in synthetic_records():
        append_jsonl(results, record)
    records = load_records([results, results])  # a case repeated: the last record counts
    assert len(records) == len(synthetic_records())
    assert_png(plot.plot(records, tmp_path / "all.png"))
    # compile measured in another invocation, without a speedup: the plot derives it
    later = dict(records[0], backend="compile", median_ms=records[0]["median_ms"] / 4,
                 speedup_vs_eager=None)
    derived = plot.with_speedups_from_medians([records[0], later])
    assert [r["speedup_vs_eager"] for r in derived] == [1.0, 4.0]


def legacy(record: dict) -> dict:
    """``record`` as versions before the eager backend wrote it: the eager baseline was called
    ``ref``, and there was no ``eager`` anywhere."""
    old = {k: v for k, v in record.items() if k != "speedup_vs_eager"}
    old["speedup_vs_ref"] = record.get("speedup_vs_eager")
    if old["backend"] == "eager":
        old["backend"] = "ref"
    return old


def test_plot_reads_records_that_call_the_eager_baseline_ref(tmp_path):
    pytest.importorskip("matplotlib")
    from stylegan_fast.bench import plot

    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    for record in synthetic_records():
        append_jsonl(old, legacy(record))
        append_jsonl(new, record)
    assert "eager" not in old.read_text()
    assert load_records([old]) == load_records([new])
    records = load_records([old])
    assert {r["backend"] for r in records} == {"eager", "compile", "triton", "cuda"}
    derived = plot.with_speedups_from_medians(records)
    speedups = [r["speedup_vs_eager"] for r in derived if r["op"] == "bias_act"]
    assert speedups == pytest.approx([1, 2, 3, 4])
    assert_png(plot.plot(records, tmp_path / "old.png"))


def test_plot_explains_what_is_missing(tmp_path, capsys, monkeypatch):
    assert cli.main(["bench", "--plot", str(tmp_path / "p.png")]) == 2
    assert "--results" in capsys.readouterr().err
    assert cli.main(["bench", "--plot", str(tmp_path / "p.png"), "--results",
                     str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    results = tmp_path / "results.jsonl"
    append_jsonl(results, synthetic_records()[0])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert cli.main(["bench", "--plot", str(tmp_path / "p.png"), "--results", str(results)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
