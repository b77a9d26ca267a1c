"""The op benchmark's filtered_lrelu cases: StyleGAN3's layers (filters, padding, sizes), their
minimum traffic against hand counts, and a smoke run on ref and eager (CPU)."""
import json

import pytest
import torch

from stylegan_fast import cli
from stylegan_fast.bench import op_bench, op_cases
from stylegan_fast.errors import UserError
from stylegan_fast.ops.filtered_lrelu import geometry
from stylegan_fast.train import memory

FLRELU = op_cases.FILTERED_LRELU_OPS


def case(op, shape, mode="fwd+bwd", dtype="float32", backend="ref"):
    return op_cases.Case(op, backend, dtype, shape, mode, "cpu")


def layer_geometry(op, shape):
    """The op's geometry for x of ``shape`` with the case's own filters and padding."""
    kwargs = op_cases.OP_SPECS[op].layer.kwargs(shape[2], shape[3], "cpu")
    return kwargs, geometry(shape[2], shape[3], kwargs["fu"], kwargs["fd"], kwargs["up"],
                            kwargs["down"], kwargs["padding"])


def test_the_layers_are_stylegan3s_at_256px():
    # StyleGAN3's SynthesisLayer at 256 px: (x, the output's size, padding) per layer kind.
    expected = {"flrelu_t": [(38, 36, [9, 8, 9, 8]), (150, 148, [9, 8, 9, 8]),
                             (278, 276, [9, 8, 9, 8])],
                "flrelu_t_up": [(38, 52, [-6, -9, -6, -9]), (86, 148, [-6, -9, -6, -9]),
                                (150, 276, [-6, -9, -6, -9])],
                "flrelu_r": [(36, 36, [11, 10, 11, 10]), (148, 148, [11, 10, 11, 10]),
                             (276, 276, [11, 10, 11, 10])],
                "flrelu_torgb": [(256, 256, [0, 0, 0, 0]), (1024, 1024, [0, 0, 0, 0])]}
    preset = op_cases.PRESETS["gpu"]
    for op, layers in expected.items():
        shapes = preset.shapes_for(op)
        assert [s[2] for s in shapes] == [n for n, _, _ in layers]
        for shape, (_, out, padding) in zip(shapes, layers):
            kwargs, geo = layer_geometry(op, shape)
            assert kwargs["padding"] == padding, (op, shape)
            assert (geo.out_h, geo.out_w) == (out, out) == op_cases.output_shape(op, shape)[2:]
    t, up, r, rgb = (op_cases.OP_SPECS[op].layer.kwargs(38, 38, "cpu") for op in FLRELU)
    assert (t["up"], t["down"], t["fu"].shape, t["fd"].shape) == (2, 2, (12,), (12,))
    assert (up["up"], up["down"], up["fu"].shape, up["fd"].shape) == (4, 2, (24,), (12,))
    assert (r["fu"].shape, r["fd"].shape) == ((12,), (12, 12))
    assert rgb["fu"] is None and rgb["fd"] is None and (rgb["gain"], rgb["slope"]) == (1, 1)
    assert {k["clamp"] for k in (t, up, r, rgb)} == {256}
    for f in (t["fu"], t["fd"], up["fu"], r["fd"]):
        assert f.dtype == torch.float32 and abs(f.sum().item() - 1) < 1e-5
    torch.testing.assert_close(r["fd"], r["fd"].T)  # radial: symmetric


def test_every_case_fits_any_small_shape():
    for op in FLRELU:
        for shape in [(1, 2, 4, 4), (2, 8, 9, 7), (1, 1, 3, 30)]:
            _, geo = layer_geometry(op, shape)
            assert (geo.out_h, geo.out_w) == op_cases.output_shape(op, shape)[2:]


def test_lowpass_filters_are_stylegan3s_design():
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    import numpy as np
    for taps, cutoff, width, fs in [(12, 2 ** -2.5, 1 - 2 ** -1.5, 2), (24, 0.25, 0.5, 4),
                                    (12, 32.0, 64.0, 256.0)]:
        expected = signal.firwin(numtaps=taps, cutoff=cutoff, width=width, fs=fs)
        actual = op_cases.lowpass_filter(taps, cutoff, width, fs).double().numpy()
        np.testing.assert_allclose(actual, expected, atol=1e-7)
        # StyleGAN3's radial (jinc) filter, as its design_lowpass_filter writes it
        x = (np.arange(taps) - (taps - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        f = special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        w = np.kaiser(taps, signal.kaiser_beta(signal.kaiser_atten(taps, width / (fs / 2))))
        f *= np.outer(w, w)
        actual = op_cases.lowpass_filter(taps, cutoff, width, fs, radial=True).double().numpy()
        np.testing.assert_allclose(actual, f / f.sum(), atol=1e-7)


def test_minimum_traffic_counts_x_y_and_the_signs_by_hand():
    # flrelu_t on [2, 3, 9, 7]: output 7 x 5 (9 - 2, 7 - 2); the region fd reads is
    # (7 - 1) * 2 + 12 = 24 rows by (5 - 1) * 2 + 12 = 20 columns: 24 * ceil(20 / 4) = 120 bytes
    # of signs per plane, 6 planes.
    inputs = op_cases.make_inputs(case("flrelu_t", (2, 3, 9, 7)))
    x, y, signs, b, f = 2 * 3 * 9 * 7 * 4, 6 * 7 * 5 * 4, 6 * 120, 3 * 4, 12 * 4
    minimum = op_cases.minimum_traffic
    assert minimum(inputs, "fwd") == {"x": (x, 0), "b": (b, 0), "fu": (f, 0), "fd": (f, 0),
                                      "y": (0, y), "signs": (0, signs)}
    assert minimum(inputs, "bwd") == {"dy": (y, 0), "signs": (signs, 0), "fu": (f, 0),
                                      "fd": (f, 0), "dx": (0, x), "db": (0, b)}
    assert op_cases.min_bytes(inputs, "fwd+bwd") == 2 * (x + y + signs + b) + 4 * f
    # inference saves nothing
    inference = op_cases.make_inputs(case("flrelu_t", (2, 3, 9, 7), mode="fwd"))
    assert op_cases.min_bytes(inference, "fwd") == x + y + b + 2 * f
    # flrelu_t_up on bfloat16 [1, 2, 9, 9]: map 7 -> 2 * 7 - 2 * 3 = 8 (margin 3 on so small a
    # map); region (8 - 1) * 2 + 12 = 26: 26 * 7 bytes per plane; 24 + 12 taps.
    up = op_cases.make_inputs(case("flrelu_t_up", (1, 2, 9, 9), dtype="bfloat16"))
    assert op_cases.minimum_traffic(up, "fwd") == {
        "x": (2 * 81 * 2, 0), "b": (8, 0), "fu": (96, 0), "fd": (48, 0), "y": (0, 2 * 64 * 2),
        "signs": (0, 2 * 26 * 7)}
    # flrelu_r: a 12 x 12 radial fd; ToRGB: no filters, the region is the output itself.
    r = op_cases.make_inputs(case("flrelu_r", (1, 2, 9, 7)))
    assert op_cases.minimum_traffic(r, "bwd")["fd"] == (12 * 12 * 4, 0)
    assert op_cases.minimum_traffic(r, "fwd")["signs"] == (0, 2 * 28 * 6)  # 28 x 24 region
    rgb = op_cases.make_inputs(case("flrelu_torgb", (2, 3, 9, 7), dtype="float16"))
    assert op_cases.minimum_traffic(rgb, "fwd") == {"x": (2 * 3 * 63 * 2, 0), "b": (12, 0),
                                                    "y": (0, 2 * 3 * 63 * 2),
                                                    "signs": (0, 6 * 9 * 2)}


@pytest.mark.parametrize("op", FLRELU)
def test_the_saved_signs_are_what_the_ref_backend_saves(op):
    inputs = op_cases.make_inputs(case(op, (2, 3, 9, 7)))
    fn = op_cases.op_function(op, "ref")
    _, saved = memory.saved_bytes(lambda: fn(**inputs.kwargs))
    filters = sum(t.numel() * 4 for name, t in inputs.kwargs.items() if name in ("fu", "fd")
                  and t is not None)
    signs = op_cases.minimum_traffic(inputs, "fwd")["signs"][1]
    # ref saves the signs and the filters (None: a 1 x 1 filter of its own)
    assert saved - signs in (filters, filters + 8)


@pytest.mark.parametrize("op", FLRELU)
def test_each_case_runs_on_ref_like_its_definition(op):
    c = case(op, (2, 3, 9, 7))
    inputs = op_cases.make_inputs(c)
    y = op_cases.op_function(op, "ref")(**inputs.kwargs)
    assert tuple(y.shape) == op_cases.output_shape(op, (2, 3, 9, 7))
    torch.testing.assert_close(y, op_cases.OP_SPECS[op].reference(**inputs.kwargs))
    runner = op_bench.prepare(c)
    runner.step()  # forward and backward with a dy of the output's shape
    runner.reset()
    assert runner.bytes == op_cases.min_bytes(op_cases.make_inputs(c), "fwd+bwd")


def test_ops_filtered_lrelu_selects_the_four_layers():
    assert op_cases.expand_ops(["filtered_lrelu", "bias_act", "flrelu_r"]) == [*FLRELU,
                                                                               "bias_act"]
    cases = op_cases.make_cases(op_cases.expand_ops(["filtered_lrelu"]), ["eager", "ref"],
                                ["bfloat16"], op_cases.PRESETS["gpu"].shapes_for, ["fwd"], "cpu")
    assert [(c.op, c.shape, c.backend) for c in cases[:3]] == [
        ("flrelu_t", (16, 512, 38, 38), "eager"), ("flrelu_t", (16, 512, 38, 38), "ref"),
        ("flrelu_t_up", (16, 512, 38, 38), "eager")]
    assert len(cases) == 2 * 11
    with pytest.raises(UserError, match="filtered_lrelu"):
        cli_args = cli.build_parser().parse_args(["bench", "--ops", "flrelu"])
        op_bench._selection(cli_args, "cpu")


def test_bench_runs_a_filtered_lrelu_case_on_ref_and_eager(capsys, tmp_path):
    jsonl = tmp_path / "ops.jsonl"
    assert cli.main(["bench", "--ops", "flrelu_r", "--backends", "eager,ref", "--reps", "1",
                     "--warmup", "0", "--shapes", "1x2x9x7", "--device", "cpu",
                     "--jsonl", str(jsonl)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("flrelu_r")]
    assert [(row[1], row[4]) for row in rows] == [("eager", "fwd"), ("ref", "fwd"),
                                                  ("eager", "fwd+bwd"), ("ref", "fwd+bwd")]
    assert "GB/s" in out and "0 failed" in out
    for record in map(json.loads, jsonl.read_text().splitlines()):
        inputs = op_cases.make_inputs(case("flrelu_r", (1, 2, 9, 7), mode=record["mode"]))
        least = op_cases.min_bytes(inputs, record["mode"])  # GB/s of the minimum traffic
        assert record["gbps"] == pytest.approx(least / record["median_ms"] / 1e6)
