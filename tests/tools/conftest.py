"""A tiny trained-format checkpoint (16 px, a few channels) shared by the tools' tests."""
import pytest
import torch

from stylegan_fast.models import Generator
from stylegan_fast.train import checkpoint
from stylegan_fast.train.config import TrainConfig

TINY = dict(resolution=16, channels=3, z_dim=16, w_dim=16, mapping_layers=2, channel_base=64,
            channel_max=16)


def tiny_generator(seed: int = 0) -> Generator:
    """A Generator with random, non-zero noise strengths and w_avg (as after training)."""
    torch.manual_seed(seed)
    G = Generator(TINY["resolution"], z_dim=TINY["z_dim"], w_dim=TINY["w_dim"],
                  img_channels=TINY["channels"], channel_base=TINY["channel_base"],
                  channel_max=TINY["channel_max"], mapping_layers=TINY["mapping_layers"])
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "noise_strength" in name:
                p.normal_(0, 0.5)
        G.mapping.w_avg.normal_()
    return G


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """(path of a checkpoint saved by train.checkpoint.save, the Generator in it as G_ema)."""
    G = tiny_generator()
    config = TrainConfig(data="builtin:faces", out="unused", **TINY)
    state = {"config": config.to_dict(), "G": G.state_dict(), "G_ema": G.state_dict(),
             "progress": {"nimg": 64, "lod": 0.0}}
    path = checkpoint.save(state, tmp_path_factory.mktemp("run"), 64, keep=0)
    return path, G.eval()
