"""Tiny training runs for tests: 8-16 px, a few channels, a few steps, CPU, ref backend."""
from __future__ import annotations

import torch

from stylegan_fast.train import TrainConfig

TINY = dict(data="builtin:faces", resolution=16, z_dim=16, w_dim=16, mapping_layers=2,
            channel_base=64, channel_max=16, batch=4, kimg=0.016, start_resolution=8,
            stable_kimg=0.004, fade_kimg=0.008, ema_kimg=0.01, workers=0, device="cpu",
            backend="ref", progress=False, snapshot_kimg=100, log_kimg=0.004, sample_grid=4,
            cpu_threads=1)  # tiny tensors: one thread is as fast, and immune to busy cores


def tiny_config(out, **overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, "out": str(out), **overrides})


def assert_state_dicts_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def flat(optimizer_state: dict) -> list:
    """Every tensor in an optimizer's state dict, in order."""
    return [v for per_param in optimizer_state["state"].values() for v in per_param.values()
            if isinstance(v, torch.Tensor)]
