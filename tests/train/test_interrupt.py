"""Stopping a run on SIGINT/SIGTERM: the step in flight finishes, a checkpoint is written, the
run continues exactly from it; a second signal stops at once; time-based snapshots; failed
writes keep the previous checkpoint."""
from __future__ import annotations

import errno
import os
import signal

import pytest
import torch
import torch.distributed as dist

from stylegan_fast import cli
from stylegan_fast.train import checkpoint, distributed, interrupt, loop, train

from .helpers import assert_state_dicts_equal, flat, tiny_config

COMMON = {"kimg": 0.032, "snapshot_kimg": 0.016, "keep_checkpoints": 0}  # 8 steps of 4 images


def signal_at_steps(monkeypatch, signals: dict) -> None:
    """After the step numbered k (1-based) completes, send this process the signals in
    ``signals[k]``."""
    step = loop.Trainer.train_step

    def stepping(self, phase):
        step(self, phase)
        for sig in signals.get(self.step, []):
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(loop.Trainer, "train_step", stepping)


def test_sigint_checkpoints_after_the_step_and_the_run_resumes_exactly(tmp_path, monkeypatch,
                                                                       capsys):
    straight = train(tiny_config(tmp_path / "straight", **COMMON))
    signal_at_steps(monkeypatch, {3: [signal.SIGINT]})
    stopped = train(tiny_config(tmp_path / "run", **COMMON))
    assert stopped["stopped_by"] == signal.SIGINT and stopped["nimg"] == 12
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run")] == [
        "checkpoint-000000012.pt"]
    err = capsys.readouterr().err
    assert "SIGINT received" in err and "stopped by SIGINT at 0.012 kimg" in err
    assert f"--resume {tmp_path / 'run'}" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    monkeypatch.undo()
    resumed = train(tiny_config(tmp_path / "run", **COMMON), resume=str(tmp_path / "run"))
    assert resumed["stopped_by"] is None and resumed["nimg"] == 32
    a, b = checkpoint.load(straight["checkpoint"]), checkpoint.load(resumed["checkpoint"])
    for name in ("G", "D", "G_ema"):
        assert_state_dicts_equal(a[name], b[name])
    for name in ("opt_G", "opt_D"):
        assert all(torch.equal(x, y) for x, y in zip(flat(a[name]), flat(b[name])))


def test_second_sigint_stops_at_once(tmp_path, monkeypatch):
    signal_at_steps(monkeypatch, {5: [signal.SIGINT, signal.SIGINT]})
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path, **COMMON))
    # Only the periodic checkpoint at 16 images: nothing was written for step 5.
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "checkpoint-000000016.pt"]
    assert not list(tmp_path.glob(".*.tmp*"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_exit_status_143_from_the_command_line(tmp_path, monkeypatch, capsys):
    signal_at_steps(monkeypatch, {2: [signal.SIGTERM]})
    argv = ["train", "--data", "builtin:faces", "--out", str(tmp_path), "--resolution", "8",
            "--z-dim", "8", "--w-dim", "8", "--mapping-layers", "1", "--channel-base", "32",
            "--channel-max", "8", "--batch", "4", "--kimg", "0.032", "--device", "cpu",
            "--backend", "ref", "--workers", "0", "--progress", "false", "--sample-grid", "4"]
    assert cli.main(argv) == 143
    assert checkpoint.load(tmp_path)["progress"]["nimg"] == 8
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_snapshot_minutes_adds_time_based_snapshots(tmp_path):
    summary = train(tiny_config(tmp_path, kimg=0.016, snapshot_kimg=100, keep_checkpoints=0,
                                snapshot_minutes=1e-9))  # due after every step
    assert summary["steps"] == 4
    assert [int(p.name[11:20]) for p in checkpoint.list_checkpoints(tmp_path)] == [
        4, 8, 12, 16]
    assert len(list(tmp_path.glob("samples-*.png"))) == 4


def failing_save_on(monkeypatch, calls: set) -> None:
    """checkpoint.save raises ENOSPC on the given call numbers (1-based)."""
    save, count = checkpoint.save, [0]

    def maybe_failing(*args, **kwargs):
        count[0] += 1
        if count[0] in calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "checkpoint.tmp")
        return save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", maybe_failing)


def test_failed_periodic_write_warns_and_training_goes_on(tmp_path, monkeypatch):
    failing_save_on(monkeypatch, {2})
    with pytest.warns(UserWarning, match=r"could not write the snapshot at 0.016 kimg: No space "
                                         r"left on device .*checkpoint-000000008.pt' is intact"):
        summary = train(tiny_config(tmp_path, **{**COMMON, "snapshot_kimg": 0.008}))
    assert summary["nimg"] == 32
    assert [int(p.name[11:20]) for p in checkpoint.list_checkpoints(tmp_path)] == [8, 24, 32]


def test_failed_final_write_is_an_error_and_keeps_the_previous(tmp_path, monkeypatch, capsys):
    failing_save_on(monkeypatch, {2})
    with pytest.raises(loop.SnapshotError, match="No space left on device"):
        train(tiny_config(tmp_path, **COMMON))
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "checkpoint-000000016.pt"]
    assert checkpoint.load(tmp_path)["progress"]["nimg"] == 16



def test_ranks_agree_one_step_late_without_waiting(monkeypatch):
    """Under torchrun each step's flags are all-reduced while the next step runs: a call
    returns the flags of the call before (the same on every rank). Alone: at once."""
    alone = interrupt.Agreement(distributed.World(0, 1, torch.device("cpu")))
    assert alone(signal.SIGTERM, True) == (signal.SIGTERM, True)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        world = distributed.World(0, 2, torch.device("cpu"))  # as if another rank took part
        with interrupt.Agreement(world) as agree:
            assert agree(None, False) == (None, False)
            assert agree(signal.SIGINT, True) == (None, False)  # the previous step's flags
            assert agree(None, False) == (signal.SIGINT, True)
            assert agree(None, False) == (None, False)
            agree(signal.SIGTERM, False)
        assert agree._pending is None  # the last all-reduce was awaited
    finally:
        dist.destroy_process_group()
