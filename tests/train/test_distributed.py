import json
import os
import subprocess
import sys

from stylegan_fast.train import checkpoint


def test_torchrun_two_processes_on_cpu(tmp_path):
    """2 processes (gloo): each trains on its half of every batch, rank 0 alone writes."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "stylegan_fast.cli", "train",
               "--data", "builtin:faces", "--out", str(out), "--resolution", "8",
               "--z-dim", "8", "--w-dim", "8", "--mapping-layers", "1", "--channel-base", "32",
               "--channel-max", "8", "--batch", "8", "--batch-gpu", "2", "--kimg", "0.016",
               "--device", "cpu", "--backend", "ref", "--workers", "0", "--progress", "false",
               "--sample-grid", "4", "--seed", "1", "--log-kimg", "0.008"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in checkpoint.list_checkpoints(out)] == ["checkpoint-000000016.pt"]
    assert len(list(out.glob("samples-*.png"))) == 1
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[0]["world_size"] == 2
    steps = [r for r in records if "loss_G" in r]
    assert [r["nimg"] for r in steps] == [8, 16]  # 2 ranks x 2 passes x 2 images per step
    state = checkpoint.load(out)
    assert state["progress"]["nimg"] == 16 and len(state["rng"]) == 2
    assert not state["rng"][0]["torch"].equal(state["rng"][1]["torch"])  # own noise per rank
