"""The traffic meter (on small kernels whose exact traffic is known) and the traffic report.

The report's cases assert what each op's kernels are designed to move: the minimum (<= 1.02x)
wherever one program holds a whole plane, and the documented two-sweep ceiling above that
(1.50x forward, 1.67x backward, README "Performance"): pinned both ways, so that a regression
fails, and an improvement fails too until the README and the docstrings that quote it change.
"""
import json

import pytest
import torch
import triton
import triton.language as tl

from stylegan_fast import cli
from stylegan_fast.bench import op_cases, traffic
from stylegan_fast.bench.traffic_meter import UNATTRIBUTED, interpreter_active, metering

pytestmark = pytest.mark.skipif(not interpreter_active(),
                                reason="needs Triton's interpreter (TRITON_INTERPRET=1, no GPU)")


# ---------------------------------------------------------------- the meter, on known kernels
@triton.jit
def _copy(src, dst, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst + offsets, tl.load(src + offsets, mask=offsets < n), mask=offsets < n)


@triton.jit
def _copy_even(src, dst, n, BLOCK: tl.constexpr):
    """dst[i // 2] = src[i] for the even i < n: half of src read, half of its size written."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    even = (offsets % 2 == 0) & (offsets < n)
    tl.store(dst + offsets // 2, tl.load(src + offsets, mask=even, other=0.0), mask=even)


@triton.jit
def _accumulate(src, acc, BLOCK: tl.constexpr):
    """acc += src, with an unmasked load and an atomic add."""
    offsets = tl.arange(0, BLOCK)
    tl.atomic_add(acc + offsets, tl.load(src + offsets))


@triton.jit
def _load_at(base, offset, dst, BLOCK: tl.constexpr):
    """dst = base[offset : offset + BLOCK]: reads memory outside every tensor passed."""
    offsets = tl.arange(0, BLOCK)
    tl.store(dst + offsets, tl.load(base + offset + offsets))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.uint8], ids=str)
def test_a_copy_moves_its_size_once_each_way(dtype):
    n, block = 1000, 256  # four programs, the last one partly masked
    src = torch.arange(n).to(dtype)
    dst = torch.zeros_like(src)
    with metering() as meter:
        _copy[(triton.cdiv(n, block),)](src, dst, n, BLOCK=block)
    assert torch.equal(dst, src)
    size = n * src.element_size()
    moved = meter.traffic({"input": src})
    assert (moved["input"].read, moved["input"].written) == (size, 0)
    assert (moved["dst"].read, moved["dst"].written) == (0, size)  # named after its parameter
    assert meter.total == 2 * size and meter.launches == ["_copy"] and meter.programs == 4
    assert UNATTRIBUTED not in moved


def test_masked_out_elements_are_not_counted():
    n = 1000
    src, dst = torch.randn(n), torch.zeros(n)
    with metering() as meter:
        _copy_even[(4,)](src, dst, n, BLOCK=256)
    assert torch.equal(dst[:n // 2], src[::2])
    moved = meter.traffic()
    assert moved["src"].read == n // 2 * 4 and moved["src"].reads == 0.5
    assert moved["dst"].written == n // 2 * 4 and meter.total == n * 4


def test_atomics_count_as_a_read_and_a_write():
    src, acc = torch.randn(64), torch.ones(64)
    with metering() as meter:
        _accumulate[(3,)](src, acc, BLOCK=64)
    # three adds of the same value round the same in any order; 1 + 3 * src rounds differently,
    # which fails allclose's absolute tolerance wherever src is near -1/3
    assert torch.equal(acc, torch.ones(64) + src + src + src)
    moved = meter.traffic()
    assert moved["src"].read == 3 * 256
    assert (moved["acc"].read, moved["acc"].written) == (3 * 256, 3 * 256)


def test_an_address_outside_every_tensor_passed_is_unattributed_not_dropped():
    a, b, dst = torch.randn(64), torch.randn(64), torch.zeros(32)
    low, high = sorted((a, b), key=lambda t: t.data_ptr())  # a positive offset from low to high
    offset = (high.data_ptr() - low.data_ptr()) // 4
    with metering() as meter:
        _load_at[(1,)](low, offset, dst, BLOCK=32)
    assert torch.equal(dst, high[:32])
    moved = meter.traffic()
    assert (moved[UNATTRIBUTED].read, moved[UNATTRIBUTED].written) == (128, 0)
    assert moved["base"].read == 0 and meter.total == 256


def test_hooks_are_removed_after_the_block_even_on_error():
    from triton.runtime import interpreter

    builder, call = interpreter.interpreter_builder, interpreter.GridExecutor.__call__
    before = dict(vars(builder))
    with pytest.raises(ZeroDivisionError):
        with metering():
            assert vars(builder).keys() != before.keys()
            1 / 0
    assert vars(builder) == before and interpreter.GridExecutor.__call__ is call
    src, dst = torch.randn(8), torch.zeros(8)
    with metering() as meter:
        with pytest.raises(RuntimeError, match="already active"):
            with metering():
                pass
    _copy[(1,)](src, dst, 8, BLOCK=8)  # after the block: not counted
    assert meter.total == 0 and torch.equal(dst, src)


# ---------------------------------------------------------------- the minimum
def test_the_minimum_counts_each_tensor_once_and_saved_state_only_with_grad():
    def inputs(op, mode, **kwargs):
        return op_cases.make_inputs(op_cases.Case(op, "triton", "bfloat16", (2, 3, 4, 5), mode,
                                                  "cpu"), **kwargs)

    x, per_channel, per_sample, stats = 2 * 3 * 20 * 2, 3 * 4, 2 * 3 * 4, 2 * 3 * 4
    minimum = op_cases.minimum_traffic
    assert minimum(inputs("bias_act", "fwd"), "fwd") == {"x": (x, 0), "b": (per_channel, 0),
                                                          "y": (0, x)}
    training = inputs("bias_act", "fwd+bwd")
    assert minimum(training, "fwd")["mask"] == (0, x // 2)  # uint8 beside bfloat16
    assert minimum(training, "bwd") == {"dy": (x, 0), "mask": (x // 2, 0), "dx": (0, x),
                                        "db": (0, per_channel)}
    # noise drawn from a seed is free, a given map is read once; dx is dy itself
    seeded, given = inputs("noise_inject", "fwd+bwd"), inputs("noise_inject", "fwd+bwd",
                                                              explicit_noise=True)
    assert "noise" not in minimum(seeded, "fwd") and minimum(given, "fwd")["noise"] == (x // 3, 0)
    assert minimum(seeded, "bwd") == {"dy": (x, 0), "dstrength": (0, per_channel)}
    epilogue = minimum(inputs("style_epilogue", "fwd+bwd"), "bwd")
    assert epilogue == {"dy": (x, 0), "x": (x, 0), "mean": (stats, 0), "rstd": (stats, 0),
                        "bias": (per_channel, 0), "noise_strength": (per_channel, 0),
                        "style_scale": (per_sample, 0), "dx": (0, x), "dbias": (0, per_channel),
                        "dnoise_strength": (0, per_channel), "dstyle_scale": (0, per_sample),
                        "dstyle_bias": (0, per_sample)}
    assert "mean" not in minimum(inputs("adain", "fwd"), "fwd")
    assert op_cases.min_bytes(training, "fwd+bwd") == sum(
        r + w for d in ("fwd", "bwd") for r, w in minimum(training, d).values())


# ---------------------------------------------------------------- the report
def measure(op, dtype, layout, shape, mode="fwd+bwd") -> dict:
    """{direction: record} of one case."""
    records = traffic.measure(traffic.TrafficCase(op, dtype, layout, shape, mode))
    return {r["direction"]: r for r in records}


def big_reads(record) -> dict:
    """{tensor: times read} for the tensors of at least 1 KiB."""
    return {name: t["read"] / t["size"] for name, t in record["tensors"].items()
            if t["size"] >= 1024 and t["read"]}


SINGLE_SWEEP = [  # one program holds the whole plane (or tile) of every element
    ("bias_act", "float32", "NCHW", (2, 3, 16, 16)),
    ("bias_act", "bfloat16", "channels_last", (1, 2, 128, 128)),
    ("bias_act_swish", "float32", "NCHW", (2, 3, 16, 16)),  # backward reads x and b, no mask
    ("bias_act_swish", "bfloat16", "channels_last", (1, 2, 32, 32)),
    ("noise_inject", "bfloat16", "NCHW", (1, 2, 128, 128)),
    ("noise_inject", "float32", "channels_last", (2, 3, 16, 16)),
    ("adain", "bfloat16", "NCHW", (1, 2, 128, 128)),  # 16K pixels: the largest single plane
    ("style_epilogue", "float32", "NCHW", (1, 2, 128, 128)),
    ("style_epilogue", "bfloat16", "channels_last", (2, 3, 32, 32)),  # 4096 / 4 channels
    ("style_epilogue", "float32", "channels_last", (1, 512, 4, 4)),
]


@pytest.mark.parametrize("op,dtype,layout,shape", SINGLE_SWEEP, ids=lambda v: (
    "x".join(map(str, v)) if isinstance(v, tuple) else v))
def test_single_sweep_kernels_move_the_minimum(op, dtype, layout, shape):
    records = measure(op, dtype, layout, shape)
    for direction, record in records.items():
        assert record["error"] is None
        assert record["ratio"] <= 1.02, (direction, record["ratio"], record["beyond"])
        assert all(times == 1 for times in big_reads(record).values()), (direction, record)
    assert records["fwd"]["tensors"]["x"]["read"] == records["fwd"]["minimum"]["x"]["read"]


@pytest.mark.parametrize("layout,dtype", [("NCHW", "float32"), ("channels_last", "bfloat16")])
def test_bias_act_inference_writes_no_mask(layout, dtype):
    """Under torch.no_grad() nothing needs the mask: one read of x, one write of y."""
    record = measure("bias_act", dtype, layout, (2, 3, 16, 16), mode="fwd")["infer"]
    assert record["ratio"] <= 1.02, record["beyond"]
    assert "mask" not in record["tensors"] or not record["tensors"]["mask"]["written"]
    training = measure("bias_act", dtype, layout, (2, 3, 16, 16))["fwd"]
    mask = training["tensors"]["mask"]
    assert mask["written"] == mask["size"] == 2 * 3 * 16 * 16  # with grad: the saved state


@pytest.mark.parametrize("layout,shape,dtype", [("NCHW", (1, 2, 256, 256), "float32"),
                                                ("channels_last", (1, 2, 128, 128), "bfloat16")])
def test_style_epilogue_two_sweep_ceiling_is_pinned(layout, shape, dtype):
    """Planes too large for one program are read twice (statistics, then output): x in forward,
    x and dy in backward. The README quotes these ratios."""
    records = measure("style_epilogue", dtype, layout, shape)
    forward, backward = records["fwd"], records["bwd"]
    assert {n: t for n, t in big_reads(forward).items() if t > 1} == {"x": 2.0}
    assert {n: t for n, t in big_reads(backward).items() if t > 1} == {"x": 2.0, "dy": 2.0}
    assert 1.48 <= forward["ratio"] <= 1.53, forward["beyond"]
    assert 1.64 <= backward["ratio"] <= 1.70, backward["beyond"]
    assert forward["beyond"][0] == "x read 2.00x"  # the most bytes beyond the minimum


def test_the_command_prints_and_records_each_direction(tmp_path, capsys):
    jsonl = tmp_path / "traffic.jsonl"
    status = cli.main(["bench", "--traffic", "--ops", "noise_inject", "--dtypes", "fp32",
                       "--shapes", "2x3x8x8", "--jsonl", str(jsonl)])
    out = capsys.readouterr().out
    assert status == 0, out
    rows = [line.split() for line in out.splitlines() if line.startswith("noise_inject")]
    assert [(r[1], r[3]) for r in rows] == [("infer", "NCHW"), ("fwd", "NCHW"), ("bwd", "NCHW"),
                                            ("infer", "channels_last"), ("fwd", "channels_last"),
                                            ("bwd", "channels_last")]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 6 and all(r["error"] is None and r["ratio"] for r in records)
    assert cli.main(["bench", "--traffic", "--ops", "nope"]) == 2


def test_default_cases_cover_every_op_layer_dtype_and_layout():
    cases = traffic.make_cases()
    for op in op_cases.EPILOGUE_OPS:  # the resampling ops have no traffic report
        mine = [c for c in cases if c.op == op]
        assert {c.shape[2] for c in mine} >= set(traffic.RESOLUTIONS)
        assert {(c.dtype, c.layout, c.mode) for c in mine} == {
            (d, lay, m) for d in ("float32", "bfloat16") for lay in traffic.LAYOUTS
            for m in op_cases.MODES}
    assert traffic.TrafficCase("style_epilogue", "float32", "NCHW", (1, 2, 1024, 1024),
                               "fwd+bwd") in cases
    assert any(c.shape[1] % 2 for c in cases)  # an odd channel count
    only = traffic.make_cases(["adain"], ["bfloat16"], ["fwd"], [(1, 2, 3, 4)])
    assert [(c.layout, c.shape) for c in only] == [("NCHW", (1, 2, 3, 4)),
                                                   ("channels_last", (1, 2, 3, 4))]


def test_a_process_without_the_interpreter_runs_the_report_in_a_subprocess(monkeypatch, capfd):
    monkeypatch.setattr(traffic, "_interpreter_here", lambda: False)  # as on a GPU machine
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = cli.build_parser().parse_args(["bench", "--traffic", "--ops", "adain", "--dtypes",
                                          "bf16", "--shapes", "1x2x8x8", "--modes", "fwd"])
    assert traffic.main(args) == 0
    out = capfd.readouterr().out
    assert "subprocess with TRITON_INTERPRET=1" in out and "interpreter" in out
    rows = [line.split()[:5] for line in out.splitlines() if line.startswith("adain")]
    assert rows == [["adain", "infer", "bfloat16", layout, "1x2x8x8"]
                    for layout in traffic.LAYOUTS]


def test_metering_refuses_kernels_that_are_not_interpreted(monkeypatch):
    from stylegan_fast.bench import traffic_meter

    monkeypatch.setattr(traffic_meter, "interpreter_active", lambda: False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        with metering():
            pass
