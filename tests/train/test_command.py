import argparse
import json

import pytest

from stylegan_fast import cli
from stylegan_fast.train import checkpoint
from stylegan_fast.train.config import TrainConfig

TINY_ARGS = ["--data", "builtin:faces", "--resolution", "8", "--z-dim", "8", "--w-dim", "8",
             "--mapping-layers", "1", "--channel-base", "32", "--channel-max", "8", "--batch",
             "4", "--device", "cpu", "--backend", "ref", "--workers", "0", "--progress", "false",
             "--sample-grid", "4", "--log-kimg", "0.004", "--cpu-threads", "1"]


def test_train_then_resume_with_only_resume(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_ARGS, "--out", str(out), "--kimg", "0.008"]) == 0
    assert checkpoint.load(out)["progress"]["nimg"] == 8
    # every setting comes back from the checkpoint; --kimg extends the run
    assert cli.main(["train", "--resume", str(out), "--kimg", "0.016"]) == 0
    state = checkpoint.load(out)
    assert state["progress"]["nimg"] == 16 and state["config"]["channel_max"] == 8
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in records if "loss_G" in r] == [4, 8, 12, 16]


def test_missing_arguments_and_bad_values(tmp_path, capsys):
    assert cli.main(["train", "--data", "builtin:faces"]) == 2
    assert "missing --out, --resolution" in capsys.readouterr().err
    assert cli.main(["train", *TINY_ARGS, "--out", str(tmp_path), "--resolution", "12"]) == 2
    assert "power of two" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--amp", "fp8"])
    with pytest.raises(SystemExit):
        cli.main(["train", "--mixing", "per-pixel"])
    with pytest.raises(ValueError, match="mixing must be one of per-sample, per-batch"):
        TrainConfig(data="builtin:faces", out=str(tmp_path), resolution=8, mixing="per-pixel")


def test_mixing_per_batch_reaches_the_generator(tmp_path):
    from stylegan_fast.train.command import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args([*TINY_ARGS, "--out", str(tmp_path), "--mixing", "per-batch"])
    config = config_from_args(args, {})
    assert config.mixing == "per-batch"
    from stylegan_fast.models import Generator
    from stylegan_fast.tools.loading import generator_from_state

    G = Generator(8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=32, channel_max=8)
    rebuilt = generator_from_state({"config": config.to_dict(), "G_ema": G.state_dict()})
    assert rebuilt.style_mixing_mode == "per-batch"


def test_demo_preset_runs(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--kimg", "0.016"]) == 0
    assert checkpoint.latest_checkpoint(out) is not None
    assert (out / "reals.png").is_file() and list(out.glob("samples-*.png"))


def test_resume_and_ckpt_of_a_run_skip_its_damaged_newest_checkpoint(tmp_path, capsys):
    """The newest checkpoint of a run is cut short (a full disk): --resume RUN and --ckpt RUN
    say so in one warning line and use the one before; with none left, one error line."""
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_ARGS, "--out", str(out), "--kimg", "0.008",
                     "--snapshot-kimg", "0.004", "--keep-checkpoints", "0"]) == 0
    _, newest = checkpoint.list_checkpoints(out)
    newest.write_bytes(newest.read_bytes()[:1000])
    capsys.readouterr()
    assert cli.main(["generate", "--ckpt", str(out), "--seeds", "0", "--out",
                     str(tmp_path / "images"), "--device", "cpu"]) == 0
    warning = capsys.readouterr().err.strip()
    assert warning == (f"stylegan-fast generate: warning: checkpoint {str(newest)!r} is "
                       f"truncated or corrupt: not a complete zip archive (a full disk, a "
                       f"killed write or an interrupted copy leaves files like this); skipping "
                       f"it for an older one")
    assert cli.main(["train", "--resume", str(out), "--kimg", "0.012"]) == 0
    assert "truncated" in capsys.readouterr().err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "done" and [r["nimg"] for r in log if r.get("event") ==
                                           "start"] == [0, 4]  # resumed from the older one
    for path in checkpoint.list_checkpoints(out):
        path.write_bytes(b"")
    assert cli.main(["train", "--resume", str(out)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("stylegan-fast train: error: no usable checkpoint in ")
    assert all(line.startswith("stylegan-fast train: ") for line in lines)
