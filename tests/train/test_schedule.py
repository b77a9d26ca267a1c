import pytest

from stylegan_fast.train.schedule import Schedule, ema_beta, lod_at, resolution_at


def test_lod_progressive_growing():
    # 32 px from 8 px: 2 levels to grow; 10 kimg stable + 20 kimg fade per phase
    lods = [lod_at(k * 1000, 32, 8, 10, 20) for k in (0, 10, 20, 30, 40, 50, 60, 70, 1000)]
    assert lods == [2.0, 2.0, 1.5, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]
    assert [resolution_at(lod, 32) for lod in (2.0, 1.5, 1.0, 0.5, 0.0)] == [8, 16, 16, 32, 32]
    assert lod_at(123456, 32, 32, 10, 20) == 0.0  # fixed resolution


def test_phase_batch_lr_and_accumulation():
    s = Schedule(resolution=256, start_resolution=8, stable_kimg=600, fade_kimg=600, batch=32,
                 batch_gpu=4, world_size=2, lr=0.001, batch_schedule={8: 256, 256: 16},
                 lr_schedule={128: 0.0015, 256: 0.002})
    start = s.at(0)
    assert (start.resolution, start.batch, start.batch_gpu, start.accumulation, start.lr) == (
        8, 256, 4, 32, 0.001)
    end = s.at(10 ** 9)
    assert (end.lod, end.resolution, end.batch, end.batch_gpu, end.accumulation, end.lr) == (
        0.0, 256, 16, 4, 2, 0.002)
    assert s.phase_at_resolution(128, 1.0).lr == 0.0015
    assert s.resolutions() == [8, 16, 32, 64, 128, 256]


def test_impossible_batches_fail_at_start():
    with pytest.raises(ValueError, match="batch 12 at 16 px"):
        Schedule(16, 8, 1, 1, batch=16, batch_gpu=8, world_size=1, lr=0.001,
                 batch_schedule={16: 12}, lr_schedule={})
    with pytest.raises(ValueError, match="start resolution"):
        Schedule(16, 32, 1, 1, 16, None, 1, 0.001, {}, {})
    with pytest.raises(ValueError, match="fade kimg"):
        Schedule(16, 8, 1, 0, 16, None, 1, 0.001, {}, {})


def test_ema_half_life():
    beta = ema_beta(32, 10)
    assert abs(beta ** (10_000 / 32) - 0.5) < 1e-12
