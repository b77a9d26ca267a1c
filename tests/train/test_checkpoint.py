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
        with open(f, "wb") as half:
            half.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
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
            with open(f, "wb") as half:
                half.write(b"x" * 4096); half.flush(); os._exit(9)
        torch.save = dying_save
        checkpoint.save({{"G": {{}}}}, {str(tmp_path)!r}, 2, keep=1)
    """)
    result = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert result.returncode == 9
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["checkpoint-000000001.pt"]
    assert checkpoint.load(tmp_path)["G"]["w"][0] == 1
    strays = [p for p in tmp_path.iterdir() if checkpoint.TEMP_SUFFIX in p.name]
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


def damaged_copies(path, folder) -> dict:
    """Ways a checkpoint file gets damaged: cut short at several points, a flipped byte in a
    tensor's data, emptied."""
    raw = path.read_bytes()
    copies = {}
    for fraction in (0.01, 0.3, 0.6, 0.99):
        copies[f"cut at {fraction}"] = raw[:int(len(raw) * fraction)]
    data = bytearray(raw)
    data[raw.index(torch.tensor([1234.5]).numpy().tobytes())] ^= 0x40  # inside G.w's bytes
    copies["flipped byte"] = bytes(data)
    copies["empty"] = b""
    paths = {}
    for i, (what, content) in enumerate(copies.items()):
        paths[what] = folder / f"damaged-{i}.pt"
        paths[what].write_bytes(content)
    return paths


def test_damaged_files_raise_one_clear_error(tmp_path):
    """Truncated, bit-flipped and empty files: CheckpointError naming the file and the damage;
    the digest catches what torch.load does not (a flipped byte in tensor data loads fine)."""
    good = checkpoint.save({"G": {"w": torch.full((1000,), 1234.5)}}, tmp_path, 1, keep=0)
    expected = {"cut": "truncated", "flipped": "integrity check", "empty": "empty"}
    for what, path in damaged_copies(good, tmp_path).items():
        with pytest.raises(checkpoint.CheckpointError) as info:
            checkpoint.load(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message
        assert expected[what.split()[0]] in message, (what, message)
    raw = torch.load(tmp_path / "damaged-4.pt", weights_only=True)  # torch alone: no error
    assert raw["G"]["w"][0] != 1234.5


def test_foreign_files_are_named_as_such(tmp_path):
    torch.save({"something": 1}, tmp_path / "other.pt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    torch.save({"format_version": 1, "obj": Ellipsis}, tmp_path / "object.pt")
    torch.save({"format_version": checkpoint.FORMAT_VERSION + 1}, tmp_path / "newer.pt")
    for name, expected in (("other", "not a stylegan_fast checkpoint"),
                           ("random", "not a checkpoint"), ("object", "Python objects"),
                           ("newer", "newer stylegan_fast")):
        with pytest.raises(checkpoint.CheckpointError, match=expected):
            checkpoint.load(tmp_path / f"{name}.pt")


def test_format_1_checkpoints_load_without_a_digest(tmp_path):
    torch.save({**state(7), "format_version": 1}, tmp_path / checkpoint.checkpoint_name(7))
    assert checkpoint.load(tmp_path)["progress"]["nimg"] == 7


def test_folder_skips_damaged_checkpoints_newest_first(tmp_path):
    """The two newest are damaged: one warning each, then the third newest; none usable: one
    error listing them."""
    for nimg in (1, 2, 3, 4):
        checkpoint.save({**state(nimg), "G": {"w": torch.full((1000,), nimg + 0.5)}}, tmp_path,
                        nimg, keep=0)
    files = checkpoint.list_checkpoints(tmp_path)
    files[3].write_bytes(files[3].read_bytes()[:-100])
    data = bytearray(files[2].read_bytes())
    data[data.index(torch.tensor([3.5]).numpy().tobytes())] ^= 1
    files[2].write_bytes(bytes(data))
    with pytest.warns(UserWarning) as caught:
        path, loaded = checkpoint.open_checkpoint(tmp_path)
    assert path == files[1] and loaded["progress"]["nimg"] == 2
    assert [str(files[3]) in str(w.message) for w in caught] == [True, False]
    assert all(str(w.message).endswith("skipping it for an older one") for w in caught)
    assert "truncated" in str(caught[0].message) and "integrity" in str(caught[1].message)
    for early in files[:2]:
        early.write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(checkpoint.CheckpointError,
                                                  match="all 4 are damaged"):
        checkpoint.load(tmp_path)


def test_digest_covers_every_value(tmp_path):
    base = {"G": {"w": torch.arange(6.0).view(2, 3)}, "progress": {"nimg": 3, "lod": 0.5},
            "rng": [{"torch": torch.ByteTensor([1, 2])}], "official": None}
    variants = [{**base, "progress": {"nimg": 3, "lod": 0.25}},
                {**base, "G": {"w": torch.arange(6.0).view(3, 2)}},
                {**base, "G": {"w": torch.arange(6.0, dtype=torch.float64).view(2, 3)}},
                {**base, "rng": [{"torch": torch.ByteTensor([1, 3])}]},
                {**base, "official": 0}]
    digests = {checkpoint.digest(v) for v in [base] + variants}
    assert len(digests) == len(variants) + 1
    assert checkpoint.digest(base) == checkpoint.digest({**base, "digest": "anything"})
