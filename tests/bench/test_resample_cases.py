"""The op benchmark's resampling cases (upsample2d, downsample2d, filter2d on upfirdn2d)."""
import torch

from stylegan_fast import cli
from stylegan_fast.bench import op_bench, op_cases


def test_resampling_minimum_traffic_counts_the_output_at_its_own_size():
    case = op_cases.Case("upsample2d", "ref", "bfloat16", (2, 3, 4, 5), "fwd+bwd", "cpu")
    inputs = op_cases.make_inputs(case)
    x, f = 2 * 3 * 4 * 5 * 2, 16 * 4  # bfloat16 x; the 4x4 float32 filter
    minimum = op_cases.minimum_traffic
    assert minimum(inputs, "fwd") == {"x": (x, 0), "f": (f, 0), "y": (0, 4 * x)}
    assert minimum(inputs, "bwd") == {"dy": (4 * x, 0), "f": (f, 0), "dx": (0, x)}
    down = op_cases.make_inputs(op_cases.Case("downsample2d", "ref", "float32", (1, 2, 9, 7),
                                              "fwd", "cpu"))
    assert minimum(down, "fwd")["y"] == (0, 1 * 2 * 4 * 3 * 4)
    assert op_cases.output_shape("filter2d", (1, 2, 9, 7)) == (1, 2, 9, 7)


def test_every_resampling_case_runs_and_its_output_has_the_stated_shape():
    for op in op_cases.RESAMPLE_OPS:
        case = op_cases.Case(op, "ref", "float32", (2, 3, 9, 6), "fwd+bwd", "cpu")
        inputs = op_cases.make_inputs(case)
        y = op_cases.op_function(op, "ref")(**inputs.kwargs)
        assert tuple(y.shape) == op_cases.output_shape(op, (2, 3, 9, 6))
        expected = op_cases.OP_SPECS[op].reference(**inputs.kwargs)
        torch.testing.assert_close(y, expected)
        runner = op_bench.prepare(case)
        runner.step()  # the backward's dy has the output's shape
        assert inputs.x.grad is None and runner.bytes > 0


def test_the_gpu_preset_times_the_resampling_ops_at_stylegan2_shapes():
    preset = op_cases.PRESETS["gpu"]
    assert (4, 32, 1024, 1024) in preset.shapes_for("upsample2d")
    assert preset.shapes_for("style_epilogue") == preset.shapes
    cases = op_cases.make_cases(["style_epilogue", "filter2d"], ["eager"], ["float32"],
                                preset.shapes_for, ["fwd"], "cpu")
    assert [(c.op, c.shape) for c in cases[:2]] == [("style_epilogue", preset.shapes[0]),
                                                    ("filter2d", preset.resample_shapes[0])]


def test_bench_runs_the_resampling_ops(capsys):
    assert cli.main(["bench", "--ops", "upsample2d,downsample2d,filter2d", "--backends",
                     "eager,ref", "--reps", "1", "--warmup", "0", "--shapes", "1x2x6x5"]) == 0
    out = capsys.readouterr().out
    assert "upsample2d" in out and "0 failed" in out
