"""Crash safety: a training process SIGKILLed at random moments (and once in the middle of a
checkpoint write) and resumed each time ends with the same weights, bit for bit, as a run that
was never interrupted; stopping a two-process torchrun run with SIGTERM on one rank stops both
at the same step, with one checkpoint from rank 0."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stylegan_fast.train import checkpoint

from .helpers import assert_state_dicts_equal, flat

TRAIN = ["--data", "builtin:faces", "--resolution", "8", "--z-dim", "8", "--w-dim", "8",
         "--mapping-layers", "1", "--channel-base", "32", "--channel-max", "8", "--batch", "4",
         "--kimg", "0.064", "--stable-kimg", "0.016", "--fade-kimg", "0.016",
         "--snapshot-kimg", "0.008", "--keep-checkpoints", "2", "--device", "cpu",
         "--backend", "ref", "--workers", "0", "--progress", "false", "--sample-grid", "4",
         "--cpu-threads", "1", "--seed", "3", "--log-kimg", "0.004"]
# Runs the CLI; with KILL_AT_FSYNC=k the process SIGKILLs itself at its k-th fsync, i.e. inside
# a checkpoint (or sample grid) write, after the data went to the temporary file and before the
# rename.
LAUNCHER = """
import os, signal, sys
kill_at = int(os.environ.get("KILL_AT_FSYNC", "0"))
if kill_at:
    real_fsync, calls = os.fsync, [0]
    def fsync(fd):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)
    os.fsync = fsync
from stylegan_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def launch(out: Path, resume: bool, **env) -> subprocess.Popen:
    args = ["train", "--resume", str(out)] if resume else ["train", "--out", str(out)] + TRAIN
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], env={**ENV, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def steps_logged(out: Path) -> int:
    log = out / "log.jsonl"
    return log.read_text().count('"loss_G"') if log.is_file() else 0


def final_state(out: Path) -> dict:
    return checkpoint.load(checkpoint.list_checkpoints(out)[-1])


def test_sigkilled_runs_resume_to_bit_identical_weights(tmp_path):
    straight = tmp_path / "straight"
    assert launch(straight, resume=False).wait(timeout=300) == 0
    expected = final_state(straight)
    assert expected["progress"]["nimg"] == 64

    out, rng = tmp_path / "crashed", random.Random(os.getpid())
    # Killed inside its 4th fsync: reals.png, checkpoint 8, samples 8, then checkpoint 16.
    assert launch(out, resume=False, KILL_AT_FSYNC="4").wait(timeout=300) == -signal.SIGKILL
    assert [p.name for p in checkpoint.list_checkpoints(out)] == ["checkpoint-000000008.pt"]
    assert len(list(out.glob(".checkpoint-000000016.pt.*.tmp.pt"))) == 1  # killed mid-write
    killed_mid_run = 0
    for _ in range(3):  # then at random moments of the training loop
        steps_before = steps_logged(out)
        process = launch(out, resume=True)
        while steps_logged(out) == steps_before and process.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=300)
        assert code in (-signal.SIGKILL, 0), process.stderr.read()[-3000:]
        killed_mid_run += code == -signal.SIGKILL
        for path in checkpoint.list_checkpoints(out):  # every checkpoint left is complete
            checkpoint.load(path)
    assert killed_mid_run >= 1
    process = launch(out, resume=checkpoint.latest_checkpoint(out) is not None)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]

    got = final_state(out)
    assert got["progress"]["nimg"] == 64
    for name in ("G", "D", "G_ema"):
        assert_state_dicts_equal(expected[name], got[name])
    for name in ("opt_G", "opt_D"):
        assert all(torch.equal(x, y) for x, y in zip(flat(expected[name]), flat(got[name])))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "start" for r in records) == 5  # 4 kills, 4 resumes


def rank_pids(parent: int) -> dict:
    """{rank: pid} of torchrun's worker processes (children of ``parent``), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


@pytest.mark.parametrize("how", ["SIGTERM to rank 1 only", "Ctrl-C in the terminal"])
def test_torchrun_ranks_stop_together_on_a_signal(tmp_path, how):
    """SIGTERM to one worker, or SIGINT to torchrun's process group as a terminal's Ctrl-C
    sends it (torchrun forwards it to its workers, which run in sessions of their own): both
    ranks stop at the same step, rank 0 writes one complete checkpoint there."""
    out = tmp_path / "run"
    args = [a if a != "0.064" else "10" for a in TRAIN]  # long: only the signal ends it
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "stylegan_fast.cli", "train", "--out", str(out),
               *args, "--batch-gpu", "2"]
    process = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while steps_logged(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = rank_pids(process.pid)
    assert set(workers) == {0, 1}, (workers, process.stderr.read()[-3000:]
                                    if process.poll() is not None else "")
    expected = signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT
    if how.startswith("SIGTERM"):
        os.kill(workers[1], signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=240)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    stopped = [r for r in records if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["stopped_by"] == expected, process.stderr.read()
    state = checkpoint.load(checkpoint.list_checkpoints(out)[-1])
    assert state["progress"]["nimg"] == stopped[0]["nimg"] and len(state["rng"]) == 2
    assert not list(out.glob(".*.tmp*"))
