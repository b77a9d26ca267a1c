"""Host overhead (``stylegan-fast bench --overhead``) and kernel time (``kernel_ms``) of the op
bench, issue 32; on CPU, with CUDA's graph API faked where the arithmetic is checked."""
import json
import statistics
from contextlib import contextmanager

import pytest
import torch

from stylegan_fast import cli
from stylegan_fast.bench import op_bench, op_cases, overhead, records, timing
from stylegan_fast.ops import _dispatch, backends


@pytest.fixture
def fast(monkeypatch):
    """Short timings: these tests check the plumbing, not the numbers."""
    monkeypatch.setattr(overhead, "MIN_RUN_TIME", 0.002)
    monkeypatch.setattr(overhead, "WARMUP_CALLS", 1)


def read(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- bench --overhead
def test_overhead_records_host_times_against_eager_of_the_same_run(fast, tmp_path, capsys):
    out = tmp_path / "overhead.jsonl"
    assert cli.main(["bench", "--overhead", "--ops", "bias_act", "--device", "cpu",
                     "--jsonl", str(out)]) == 0
    found = read(out)
    assert [(r["backend"], r["mode"]) for r in found] == [
        ("eager", "fwd"), ("ref", "fwd"), ("eager", "fwd+bwd"), ("ref", "fwd+bwd")]
    by = {(r["backend"], r["mode"]): r for r in found}
    for r in found:
        assert r["benchmark"] == "overhead" and r["error"] is None
        assert r["shape"] == list(overhead.DEFAULT_SHAPE) and r["dtype"] == "float32"
        assert r["host_us"] > 0 and r["median_ms"] == pytest.approx(r["host_us"] / 1e3)
        assert r["threads"] == torch.get_num_threads()
        eager = by[("eager", r["mode"])]
        assert r["host_vs_eager"] == pytest.approx(r["host_us"] / eager["host_us"])
        assert r["host_cpu_us"] > 0  # CPU tensors: the thread's CPU time too
        assert r["host_cpu_vs_eager"] == pytest.approx(r["host_cpu_us"] / eager["host_cpu_us"])
    for mode in ("fwd", "fwd+bwd"):
        ref, eager = by[("ref", mode)], by[("eager", mode)]
        assert ref["default_backend"] is True and eager["default_backend"] is False
        assert eager["custom_op_host_us"] is None and eager["custom_op_vs_eager"] is None
        assert ref["custom_op_host_us"] > 0
        assert ref["custom_op_vs_eager"] == pytest.approx(
            ref["custom_op_host_us"] / eager["host_us"])
        assert ref["custom_op_cpu_vs_eager"] == pytest.approx(
            ref["custom_op_host_cpu_us"] / eager["host_cpu_us"])
    text = capsys.readouterr().out
    assert "custom-op us" in text and f"{torch.get_num_threads()} threads" in text
    verdict = [line for line in text.splitlines() if line.startswith("bias_act: ref (default)")]
    assert len(verdict) == 1 and "fwd " in verdict[0] and "(<= 1.25 " in verdict[0]
    assert "fwd+bwd " in verdict[0] and "(<= 1 " in verdict[0]
    assert "thread CPU time: fwd" in verdict[0] and "through the custom op: fwd" in verdict[0]


def test_overhead_times_the_resampling_ops_at_the_tiny_shape_and_chosen_backends(fast, capsys):
    assert cli.main(["bench", "--overhead", "--ops", "downsample2d", "--backends", "ref",
                     "--modes", "fwd", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "downsample2d" in text and "1x2x4x4" in text and "no eager time" in text


def test_a_failing_case_is_recorded_and_only_it_sets_the_exit_status(fast, monkeypatch, tmp_path):
    timed_call = overhead._timed_call

    def broken_ref(case):
        if case.backend == "ref":
            raise RuntimeError("boom")
        return timed_call(case)
    monkeypatch.setattr(overhead, "_timed_call", broken_ref)
    out = tmp_path / "o.jsonl"
    assert cli.main(["bench", "--overhead", "--ops", "noise_inject", "--modes", "fwd",
                     "--device", "cpu", "--jsonl", str(out)]) == 1
    eager, ref = read(out)
    assert eager["error"] is None and eager["host_us"] > 0
    assert ref["error"] == "RuntimeError: boom" and ref["host_us"] is None
    assert ref["benchmark"] == "overhead" and ref["host_vs_eager"] is None


def test_the_backends_of_a_case_take_turns(fast, monkeypatch):
    order = []
    times = timing.host_times_us

    def logged(stmt, names, min_run_time):
        order.append((backends.requested_backend(), _dispatch._custom_ops_only[0]))
        return times(stmt, names, min_run_time)
    monkeypatch.setattr(overhead, "host_times_us", logged)
    cases = [op_cases.Case("bias_act", backend, "float32", (1, 2, 4, 4), "fwd", "cpu")
             for backend in ("eager", "ref")]
    result = overhead.measure_group(cases, {"bias_act": "ref"})
    assert order == [("eager", False), ("auto", False), ("auto", True)] * overhead.ROUNDS
    eager, ref = result[cases[0]], result[cases[1]]
    assert ref["host_vs_eager"] == pytest.approx(ref["host_us"] / eager["host_us"])


def test_the_verdict_says_over_where_a_backend_exceeds_the_limit():
    base = {"op": "adain", "backend": "ref", "dtype": "float32", "shape": [1, 2, 4, 4],
            "error": None, "custom_op_vs_eager": None}
    lines = overhead.verdict_lines([dict(base, mode="fwd", host_vs_eager=1.3),
                                    dict(base, mode="fwd+bwd", host_vs_eager=0.9)],
                                   {"adain": "ref"})
    assert lines == ["adain: ref (default) fwd 1.30x eager (<= 1.25 OVER), "
                     "fwd+bwd 0.90x (<= 1 ok)"]


@pytest.mark.parametrize("flags", [["--model"], ["--traffic"], ["--max-batch"], ["--reps", "3"],
                                   ["--preset", "smoke"], ["--plot", "p.png"]])
def test_overhead_refuses_the_flags_of_the_other_benchmarks(flags, capsys):
    assert cli.main(["bench", "--overhead", "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert "--overhead" in err and flags[0] in err


def test_overhead_refuses_an_unknown_op_or_backend(capsys):
    assert cli.main(["bench", "--overhead", "--ops", "nope", "--device", "cpu"]) == 2
    assert "--overhead --ops: unknown nope" in capsys.readouterr().err
    assert cli.main(["bench", "--overhead", "--backends", "nope", "--device", "cpu"]) == 2
    assert "--overhead --backends: unknown nope" in capsys.readouterr().err


def test_default_backends_on_cpu_are_eager_and_each_ops_default():
    assert overhead.default_backends(list(op_cases.OPS), "cpu") == ["eager", "ref"]


# ---------------------------------------------------------------- records files
def test_overhead_records_never_replace_op_records_and_old_files_still_load(tmp_path):
    case = op_cases.Case("bias_act", "ref", "float32", (1, 2, 4, 4), "fwd", "cpu")
    old = records.new_record(case)  # written before the benchmark field existed
    old.update(median_ms=1.0)
    op_again = dict(old, median_ms=2.0)
    over = dict(records.new_record(case), benchmark="overhead", median_ms=0.01, host_us=10.0)
    path = tmp_path / "r.jsonl"
    for record in (old, over, op_again):
        records.append_jsonl(path, record)
    loaded = records.load_records([path])
    assert sorted(r["median_ms"] for r in loaded) == [0.01, 2.0]
    assert "benchmark" in records.KEY_FIELDS


def test_the_plot_leaves_overhead_records_out(tmp_path):
    from stylegan_fast.bench import plot

    case = op_cases.Case("bias_act", "ref", "float32", (1, 2, 4, 4), "fwd", "cpu")
    over = dict(records.new_record(case), benchmark="overhead", median_ms=0.01)
    with pytest.raises(plot.PlotError, match="overhead"):
        plot.plot([over], tmp_path / "p.png")


# ---------------------------------------------------------------- kernel time in the op bench
def test_op_records_have_no_kernel_time_on_cpu(tmp_path):
    case = op_cases.Case("style_epilogue", "ref", "float32", (1, 2, 3, 3), "fwd+bwd", "cpu")
    record = op_bench.run_case(case, reps=1, warmup=0, copy_gbps=10.0)
    assert record["error"] is None and record["median_ms"] > 0
    assert all(record[key] is None for key in op_bench.KERNEL_FIELDS)
    out = tmp_path / "ops.jsonl"
    assert cli.main(["bench", "--ops", "bias_act", "--backends", "eager", "--modes", "fwd",
                     "--reps", "1", "--warmup", "0", "--device", "cpu", "--jsonl",
                     str(out)]) == 0
    (found,) = read(out)
    assert found["kernel_ms"] is None and found["kernel_error"] is None
    assert "kernel_pct_peak_bw" in found and "benchmark" not in found


def test_a_failed_op_case_still_has_the_kernel_fields(monkeypatch):
    monkeypatch.setattr(op_bench, "prepare", lambda case: 1 / 0)
    case = op_cases.Case("bias_act", "ref", "float32", (1, 2, 3, 3), "fwd", "cpu")
    record = op_bench.run_case(case, reps=1, warmup=0, copy_gbps=10.0)
    assert record["error"].startswith("ZeroDivisionError")
    assert all(key in record and record[key] is None for key in op_bench.KERNEL_FIELDS)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_the_graph_step_runs_and_accumulates_no_gradient(mode):
    case = op_cases.Case("style_epilogue", "ref", "float32", (2, 3, 4, 4), mode, "cpu")
    step, size = op_bench.graph_step(case, seed=1)
    step()
    step()
    x = 2 * 3 * 4 * 4 * 4
    small = (2 * 3 + 2 * 2 * 3) * 4  # bias, noise_strength; style_scale, style_bias
    assert size == x + small + (x if mode == "fwd+bwd" else 0)  # + dy


def test_kernel_fields_from_the_median_replay_and_min_bytes(monkeypatch):
    case = op_cases.Case("bias_act", "ref", "float32", (1, 2, 3, 3), "fwd", "cuda")
    seen = []

    def fake_kernel_time(make_step, device, calls=None):
        seen.append((device, calls))
        return timing.KernelTime(ms=0.5, calls=calls, input_sets=3)
    monkeypatch.setattr(op_bench, "kernel_time_ms", fake_kernel_time)
    fields = op_bench.kernel_fields(case, min_bytes=10**6, call_ms=1.0, copy_gbps=4.0)
    assert fields["kernel_ms"] == 0.5 and fields["kernel_gbps"] == pytest.approx(2.0)
    assert fields["kernel_pct_peak_bw"] == pytest.approx(50.0)
    assert fields["kernel_graph_calls"] == 20 and fields["kernel_input_sets"] == 3
    assert fields["kernel_error"] is None and seen == [("cuda", 20)]


def test_a_failed_capture_gives_kernel_error_not_a_failed_case(monkeypatch):
    def no_capture(make_step, device, calls=None):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")
    monkeypatch.setattr(op_bench, "kernel_time_ms", no_capture)
    case = op_cases.Case("bias_act", "ref", "float32", (1, 2, 3, 3), "fwd", "cuda:0")
    fields = op_bench.kernel_fields(case, min_bytes=100, call_ms=0.1, copy_gbps=1.0)
    assert fields["kernel_ms"] is None and fields["kernel_gbps"] is None
    assert fields["kernel_error"] == ("RuntimeError: operation not permitted when stream is "
                                      "capturing")


def test_graph_size_and_input_sets():
    assert timing.graph_calls(0.01) == 20 and timing.graph_calls(None) == 20
    assert timing.graph_calls(5.0) == 10 and timing.graph_calls(100.0) == 2
    cold = 100 * 2**20
    assert timing.input_copies(2**20, 20, cold) == 20  # small sets: one per call, at most
    assert timing.input_copies(30 * 2**20, 20, cold) == 4  # 4 x 30 MiB >= 100 MiB
    assert timing.input_copies(200 * 2**20, 20, cold) == 1
    assert timing.input_copies(0, 7, cold) == 7


def test_kernel_time_is_not_tried_off_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        timing.kernel_time_ms(lambda seed: (lambda: None, 1), "cpu")


class FakeCuda:
    """What :func:`timing.graph_replay_ms` uses of ``torch.cuda``, logging the calls; each
    replay takes ``replay_ms[i]`` by its events."""

    def __init__(self, replay_ms):
        self.log, self.capturing, self.replay_ms, self.replays = [], False, list(replay_ms), 0
        fake = self

        class Stream:
            def wait_stream(self, other):
                fake.log.append("wait")

        class Graph:
            def replay(self):
                fake.replays += 1
                fake.log.append("replay")

        class Event:
            clock = [0.0]

            def __init__(self, enable_timing=False):
                assert enable_timing
                self.time = None

            def record(self):
                if fake.log and fake.log[-1] == "replay" and fake.replays > 1:
                    Event.clock[0] += fake.replay_ms[fake.replays - 2]
                self.time = Event.clock[0]
                fake.log.append("event")

            def elapsed_time(self, end):
                return end.time - self.time

        self.Stream, self.CUDAGraph, self.Event = Stream, Graph, Event

    @contextmanager
    def device(self, device):
        yield

    @contextmanager
    def stream(self, stream):
        self.log.append("side stream")
        yield
        self.log.append("main stream")

    @contextmanager
    def graph(self, graph):
        self.capturing = True
        self.log.append("capture")
        yield
        self.capturing = False
        self.log.append("end capture")

    def current_stream(self):
        return self.Stream()

    def synchronize(self):
        self.log.append("sync")


def test_graph_replay_warms_up_on_a_side_stream_then_captures_the_calls_in_turn(monkeypatch):
    fake = FakeCuda([4.0, 2.0, 3.0])
    for name in ("device", "stream", "graph", "current_stream", "synchronize", "Stream",
                 "CUDAGraph", "Event"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    ran = []

    def make_step(i):
        def step():
            ran.append((i, fake.capturing))
            fake.log.append(f"step {i}")
        return step, 40 * 2**20

    kernel = timing.kernel_time_ms(make_step, "cuda", calls=5, cold_bytes=100 * 2**20,
                                   replays=3)
    # 3 sets (3 x 40 MiB >= 100 MiB), each warmed up KERNEL_WARMUP times before capture
    warm = [i for i, capturing in ran if not capturing]
    assert warm == [0, 1, 2] * timing.KERNEL_WARMUP
    assert [i for i, capturing in ran if capturing] == [0, 1, 2, 0, 1]
    log = fake.log
    assert log.index("side stream") < log.index("step 0") < log.index("main stream")
    assert log.index("main stream") < log.index("capture") < log.index("end capture")
    assert log.count("replay") == 4 and log[log.index("end capture") + 1] == "replay"
    assert kernel.calls == 5 and kernel.input_sets == 3
    assert kernel.ms == pytest.approx(statistics.median([4.0, 2.0, 3.0]) / 5)


def test_host_times_come_per_call_in_wall_and_thread_cpu_time():
    times = timing.host_times_us("sum(range(200))", {}, 0.01)
    assert times.wall_us and len(times.wall_us) == len(times.cpu_us)
    assert all(t > 0 for t in times.wall_us + times.cpu_us)
    # one thread busy all along: its CPU time is about its wall time (never much more)
    assert statistics.median(times.cpu_us) < 1.5 * statistics.median(times.wall_us)
