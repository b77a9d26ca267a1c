import pytest
import torch

from stylegan_fast.models import Discriminator, Generator, channels_at, num_levels


def count_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_official_1024px_parameter_counts():
    with torch.device("meta"):  # shapes only: no memory, no init cost
        G, D = Generator(1024), Discriminator(1024)
    assert count_trainable(G) == 26_219_627
    assert count_trainable(D) == 23_087_249
    assert count_trainable(G.mapping) == 8 * (512 * 512 + 512)
    assert G.num_ws == 18 and G.mapping(torch.empty(2, 512, device="meta")).shape == (2, 18, 512)


def test_channels_per_resolution():
    got = [channels_at(4 * 2 ** k, 8192, 512) for k in range(9)]
    assert got == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert channels_at(64, 256, 16) == 8


@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128, 256, 512, 1024])
def test_every_power_of_two_resolution_builds(resolution):
    with torch.device("meta"):
        G, D = Generator(resolution), Discriminator(resolution)
        img = G(torch.empty(2, 512))
        assert img.shape == (2, 3, resolution, resolution)
        assert D(img).shape == (2, 1)
    assert G.num_ws == 2 * num_levels(resolution)
    fused = [b.conv0_up.fused_resample for b in G.synthesis.blocks[1:]]
    assert fused == [4 * 2 ** k >= 128 for k in range(1, num_levels(resolution))]
    assert [b.conv1_down.fused_resample for b in D.blocks.values()] == fused


@pytest.mark.parametrize("resolution", [4, 2048, 96, 16.0])
def test_unsupported_resolutions_raise(resolution):
    with pytest.raises(ValueError, match="power of two"):
        Generator(resolution)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(resolution)


def test_non_progressive_models_keep_only_the_last_rgb_layers():
    with torch.device("meta"):
        G, D = Generator(1024, progressive=False), Discriminator(1024, progressive=False)
    assert list(G.synthesis.to_rgb) == ["b1024"] and list(D.from_rgb) == ["b1024"]
    lower_to_rgb = sum((c + 1) * 3 for c in [512, 512, 512, 512, 256, 128, 64, 32])
    assert count_trainable(G) == 26_219_627 - lower_to_rgb
    with pytest.raises(ValueError, match="progressive=False"):
        G.synthesis(torch.empty(1, 18, 512, device="meta"), lod=1.0)
