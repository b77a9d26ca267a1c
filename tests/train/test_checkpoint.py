import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from stylegan_fast.train import checkpoint, rng


def state(value: float) -> dict:
    return {"G": {"w": torch.full((1000,), value)}, "progress": {"nimg": int(value)}}


def test_save_load_keep_last_k(tmp_path):
    for nimg in (10, 20, 30, 40):
        path = checkpoint.save(state(nimg), tmp_path, nimg, keep=2)
        assert path.name == checkpoint.checkpoint_name(nimg)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "checkpoint-000000030.pt", "checkpoint-000000040.pt"]
    assert checkpoint.load(tmp_path)["progress"]["nimg"] == 40  # a folder: its newest
    assert len(list(tmp_path.iterdir())) == 2  # no temporary files left


def test_exception_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(state(1), tmp_path, 1, keep=1)
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(state(2), tmp_path, 2, keep=1)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-000000001.pt"]
    assert checkpoint.load(tmp_path)["G"]["w"][0] == 1


def test_process_killed_during_write_keeps_the_previous_checkpoint(tmp_path):
    """The writer dies inside torch.save (os._exit: no cleanup runs, as with SIGKILL)."""
    checkpoint.save(state(1), tmp_path, 1, keep=1)
    script = textwrap.dedent(f"""
        import os, torch
        from stylegan_fast.train import checkpoint
        def dying_save(obj, f, *args, **kwargs):
            f.write(b"x" * 4096); f.flush(); os._exit(9)
        torch.save = dying_save
        checkpoint.save({{"G": {{}}}}, {str(tmp_path)!r}, 2, keep=1)
    """)
    result = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert result.returncode == 9
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["checkpoint-000000001.pt"]
    assert checkpoint.load(tmp_path)["G"]["w"][0] == 1
    strays = [p for p in tmp_path.iterdir() if p.name.endswith(checkpoint.TEMP_SUFFIX)]
    assert len(strays) == 1  # the half-written temporary file ...
    checkpoint.save(state(3), tmp_path, 3, keep=1)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-000000003.pt"]  # ... is cleaned


def test_resolve_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a stylegan_fast checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_rng_capture_restore_round_trip(tmp_path):
    rng.seed_everything(5)
    saved = rng.capture()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    torch.save(saved, tmp_path / "rng.pt")
    random.random(), np.random.rand(), torch.rand(3)
    rng.restore(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])
    assert rng.derived_seed(0, 0) != rng.derived_seed(0, 1) != rng.derived_seed(1, 0)
