import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_fast.models import Generator
from stylegan_fast.train import checkpoint, loop, train

from .helpers import assert_state_dicts_equal, flat, tiny_config


def test_few_steps_end_to_end(tmp_path):
    config = tiny_config(tmp_path, mirror=True)
    summary = train(config)
    assert summary["nimg"] == 16 and summary["steps"] == 4 and summary["skipped_steps"] == 0

    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss_G" in r]
    assert [r["lod"] for r in steps] == [1.0, 1.0, 0.5, 0.0]  # grows 8 -> 16 px with a fade
    assert [r["resolution"] for r in steps] == [8, 8, 16, 16]
    assert all(math.isfinite(r["loss_G"]) and math.isfinite(r["loss_D"]) for r in steps)
    assert records[-1]["event"] == "done"

    state = checkpoint.load(summary["checkpoint"])
    assert {"G", "D", "G_ema", "opt_G", "opt_D", "scaler_G", "scaler_D", "progress", "rng",
            "config"} <= state.keys()
    assert state["progress"]["nimg"] == 16 and state["progress"]["lod"] == 0.0
    assert state["config"]["channels"] == 1  # builtin:faces is grayscale

    torch.manual_seed(config.seed)  # the networks the run started from
    G0 = Generator(16, z_dim=16, w_dim=16, img_channels=1, channel_base=64, channel_max=16,
                   mapping_layers=2)
    trained = state["G"]
    changed = [k for k, v in G0.state_dict().items() if not torch.equal(v, trained[k])]
    assert "synthesis.blocks.2.conv1.weight" in changed  # the 16 px block trained too
    assert not torch.equal(state["G_ema"]["synthesis.const"], trained["synthesis.const"])

    grid = np.asarray(Image.open(summary["samples"]))
    assert grid.shape == (2 * 64, 3 * 64)  # 4 images, 3 columns, shown at 64 px
    assert grid.std() > 0


def test_resume_continues_exactly(tmp_path):
    """8 steps straight, vs 4 steps + checkpoint + resume for 4: the same bits. The resume
    point lies inside the 8 -> 16 px fade and between two lazy R1 steps."""
    common = dict(kimg=0.032, stable_kimg=0.008, fade_kimg=0.016, r1_interval=3,
                  snapshot_kimg=0.016, keep_checkpoints=0)
    straight = train(tiny_config(tmp_path / "straight", **common))
    first = checkpoint.list_checkpoints(tmp_path / "straight")[0]
    assert first.name == "checkpoint-000000016.pt"
    assert checkpoint.load(first)["progress"]["lod"] == 0.5

    resumed = train(tiny_config(tmp_path / "resumed", **common), resume=str(first))
    assert resumed["nimg"] == straight["nimg"] == 32 and resumed["steps"] == 8
    records = [json.loads(line)
               for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["nimg"] == 16
    a, b = checkpoint.load(straight["checkpoint"]), checkpoint.load(resumed["checkpoint"])
    for name in ("G", "D", "G_ema"):
        assert_state_dicts_equal(a[name], b[name])
    for name in ("opt_G", "opt_D"):
        assert all(torch.equal(x, y) for x, y in zip(flat(a[name]), flat(b[name])))


def test_checkpoints_with_plain_adam_resume_exactly(tmp_path):
    """A checkpoint from before fused Adam (format 1, plain Adam's state: the same tensors,
    ``fused`` unset) resumes to the same bits as the fused checkpoint of the same moment."""
    common = dict(kimg=0.032, stable_kimg=0.008, fade_kimg=0.016, snapshot_kimg=0.016,
                  keep_checkpoints=0)
    straight = train(tiny_config(tmp_path / "straight", **common))
    state = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "straight")[0])
    for name in ("opt_G", "opt_D"):
        assert all(group["fused"] for group in state[name]["param_groups"])
        state[name]["param_groups"] = [{**group, "fused": None}
                                       for group in state[name]["param_groups"]]
    old = tmp_path / "old.pt"
    torch.save({**{k: v for k, v in state.items() if k != "digest"}, "format_version": 1}, old)
    resumed = train(tiny_config(tmp_path / "resumed", **common), resume=str(old))
    a, b = checkpoint.load(straight["checkpoint"]), checkpoint.load(resumed["checkpoint"])
    for name in ("G", "D", "G_ema"):
        assert_state_dicts_equal(a[name], b[name])
    for name in ("opt_G", "opt_D"):
        assert all(torch.equal(x, y) for x, y in zip(flat(a[name]), flat(b[name])))
        assert all(group["fused"] for group in b[name]["param_groups"])


def test_log_records_hold_means_since_the_previous_record(tmp_path):
    """The same run logged every step and every second step: each record of the second holds
    the means of the two steps' losses and R1 penalties."""
    every = {}
    for log_kimg in (0.004, 0.008):
        train(tiny_config(tmp_path / str(log_kimg), log_kimg=log_kimg, r1_interval=2))
        records = (tmp_path / str(log_kimg) / "log.jsonl").read_text().splitlines()
        every[log_kimg] = [r for r in map(json.loads, records) if "loss_G" in r]
    steps, pairs = every[0.004], every[0.008]
    assert [r["step"] for r in pairs] == [2, 4]
    assert [("r1" in r) for r in steps] == [True, False, True, False]  # lazy R1: steps 0, 2
    for pair, (first, second) in zip(pairs, (steps[0:2], steps[2:4])):
        for key in ("loss_D", "loss_G"):
            assert pair[key] == pytest.approx((first[key] + second[key]) / 2, rel=1e-6)
        assert pair["r1"] == pytest.approx(first["r1"], rel=1e-6)


def test_resume_rejects_other_networks(tmp_path):
    done = train(tiny_config(tmp_path / "a"))
    with pytest.raises(ValueError, match="channel_max"):
        train(tiny_config(tmp_path / "b", channel_max=8, kimg=0.032), resume=done["checkpoint"])


def test_non_finite_loss_skips_the_step(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "generator_loss", lambda scores: scores.float().flatten() * math.nan)
    config = tiny_config(tmp_path, kimg=0.008, stable_kimg=1.0, log_kimg=0.008)
    with pytest.warns(UserWarning, match="non-finite G loss") as caught:
        summary = train(config)
    assert summary["skipped_steps"] == 2
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(skipped) == 1 and skipped[0].startswith("2 G steps skipped between 0 and 8 "
                                                       "images"), skipped  # one log record
    state = checkpoint.load(summary["checkpoint"])
    torch.manual_seed(config.seed)
    G0 = Generator(16, z_dim=16, w_dim=16, img_channels=1, channel_base=64, channel_max=16,
                   mapping_layers=2)
    params = dict(G0.named_parameters())
    assert all(torch.equal(params[k], state["G"][k]) for k in params)  # G untouched
    assert all(torch.isfinite(v).all() for v in state["D"].values())
    assert state["opt_D"]["state"]  # D still stepped


def test_amp_bf16_on_cpu(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no skipped step
        summary = train(tiny_config(tmp_path, amp="bf16", kimg=0.008))
    state = checkpoint.load(summary["checkpoint"])
    assert all(v.dtype == torch.float32 for v in state["G"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state["G"].values())
    assert state["opt_G"]["state"] and state["opt_D"]["state"]


def test_amp_fp16_backs_off_the_loss_scale_instead_of_stalling(tmp_path):
    """R1's input gradient, taken of the scaled scores, overflows fp16 at the initial scale:
    the step is skipped and the scale lowered, and training goes on."""
    with pytest.warns(UserWarning, match="loss scale lowered"):
        summary = train(tiny_config(tmp_path, amp="fp16", kimg=0.016, stable_kimg=1.0))
    state = checkpoint.load(summary["checkpoint"])
    assert state["scaler_D"]["scale"] < 65536.0
    assert summary["skipped_steps"] < summary["steps"]
    assert all(torch.isfinite(v).all() for v in state["D"].values())
    assert state["opt_D"]["state"]  # D stepped after backing off


def test_gradient_accumulation_and_checkpointed_blocks_run(tmp_path):
    summary = train(tiny_config(tmp_path, batch=4, batch_gpu=2, checkpoint_blocks=1,
                                kimg=0.008, progressive=False))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[0]["checkpointed_blocks"] == 2
    assert [r["batch"] for r in records if "loss_G" in r] == [4, 4]
    assert summary["nimg"] == 8


def test_resume_may_change_precision(tmp_path):
    done = train(tiny_config(tmp_path / "a", kimg=0.004))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fp16's first steps may back off
        summary = train(tiny_config(tmp_path / "b", kimg=0.008, amp="fp16"),
                        resume=done["checkpoint"])
    assert summary["nimg"] == 8
    assert checkpoint.load(summary["checkpoint"])["scaler_G"]["scale"] > 0
