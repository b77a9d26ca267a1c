import pytest
import torch

from stylegan_fast.nn import upsample2d

from .helpers import W_DIM, Z_DIM, tiny_generator


@pytest.fixture(scope="module")
def G():
    return tiny_generator(16)


def z(n=4, seed=1):
    return torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(seed))


def test_constant_input_starts_at_ones_and_noise_strengths_at_zero():
    G = tiny_generator(16)
    fresh = type(G)(16, z_dim=Z_DIM, w_dim=W_DIM, channel_base=64, channel_max=16)
    assert torch.equal(fresh.synthesis.const, torch.ones(1, 16, 4, 4))
    strengths = [p for n, p in fresh.named_parameters() if n.endswith("noise_strength")]
    assert len(strengths) == G.num_ws and all(torch.count_nonzero(s) == 0 for s in strengths)
    shapes = [tuple(G.synthesis.const_noise(i).shape) for i in range(G.num_ws)]
    assert shapes == [(1, 1, 4, 4)] * 2 + [(1, 1, 8, 8)] * 2 + [(1, 1, 16, 16)] * 2


def test_mapping_broadcasts_one_w_to_every_layer(G):
    ws = G.mapping(z())
    assert ws.shape == (4, G.num_ws, W_DIM)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_truncation_psi_zero_gives_one_image_for_every_z(G):
    img = G(z(), truncation_psi=0.0, truncation_cutoff=None, noise_mode="const")
    assert (img - img[:1]).abs().max() == 0
    w_avg_image = G.synthesis(G.w_avg.expand(1, G.num_ws, -1), noise_mode="const")
    torch.testing.assert_close(img[:1], w_avg_image)
    assert img.shape == (4, 3, 16, 16)


def test_truncation_psi_one_changes_nothing(G):
    want = G.synthesis(G.mapping(z()), noise_mode="const")
    torch.testing.assert_close(G(z(), truncation_psi=1.0, noise_mode="const"), want, rtol=0, atol=0)


def test_truncation_cutoff_limits_the_truncated_layers(G):
    ws = G.mapping(z())
    cut = G.styles(z(), truncation_psi=0.5, truncation_cutoff=2)
    half_way = G.w_avg + 0.5 * (ws - G.w_avg)
    torch.testing.assert_close(cut[:, :2], half_way[:, :2])
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:], rtol=0, atol=0)
    torch.testing.assert_close(G.styles(z(), truncation_psi=0.5, truncation_cutoff=None), half_way)
    default = G.styles(z(), truncation_psi=0.5)  # cutoff 8 >= num_ws (6): every layer
    torch.testing.assert_close(default, half_way)


def test_truncation_is_refused_in_training():
    G = tiny_generator(16).train()
    with pytest.raises(ValueError, match="inference"):
        G(z(), truncation_psi=0.7)


def test_mix_styles_takes_ws1_before_the_crossover_and_ws2_after():
    ws1, ws2 = torch.randn(3, 6, 5), torch.randn(3, 6, 5)
    mixed = tiny_generator(16).mix_styles(ws1, ws2, torch.tensor([1, 4, 6]))
    assert torch.equal(mixed[0, :1], ws1[0, :1]) and torch.equal(mixed[0, 1:], ws2[0, 1:])
    assert torch.equal(mixed[1, :4], ws1[1, :4]) and torch.equal(mixed[1, 4:], ws2[1, 4:])
    assert torch.equal(mixed[2], ws1[2])


def crossovers(ws, w1):
    """Per sample, the first layer whose w differs from w1 (num_ws when none), checking that the
    layers after it all share one other w."""
    result = []
    for sample, w in zip(ws, w1, strict=True):
        differs = (sample != w).any(-1)
        first = int(differs.int().argmax()) if differs.any() else len(sample)
        assert differs[first:].all() and torch.equal(sample[first:], sample[first:first + 1]
                                                     .expand_as(sample[first:]))
        result.append(first)
    return torch.tensor(result)


@pytest.mark.parametrize("lod,num_active", [(0.0, 6), (1.0, 4), (0.5, 6)])
def test_training_style_mixing_per_sample(lod, num_active):
    G = tiny_generator(16, style_mixing_prob=0.9).train()
    zs = z(400)
    torch.manual_seed(0)
    ws = G.styles(zs, lod=lod)
    w1 = G.eval().mapping(zs)[:, 0]
    cut = crossovers(ws, w1)
    mixed = cut < G.num_ws
    assert set(cut[mixed].tolist()) == set(range(1, num_active))  # uniform in [1, num_active)
    assert 0.84 < mixed.float().mean() < 0.96  # probability 0.9, per sample


def test_training_style_mixing_per_batch():
    """NVIDIA's StyleGAN1 draws one decision and one crossover per minibatch."""
    G = tiny_generator(16, style_mixing_prob=0.5, style_mixing_mode="per-batch").train()
    zs = z(8)
    w1 = G.eval().mapping(zs)[:, 0]
    G.train()
    torch.manual_seed(0)
    cuts = [crossovers(G.styles(zs), w1) for _ in range(200)]
    assert all(len(set(cut.tolist())) == 1 for cut in cuts)  # the same for the whole batch
    firsts = [int(cut[0]) for cut in cuts]
    assert set(firsts) == set(range(1, G.num_ws + 1))  # uniform crossover, or no mixing
    assert 0.35 < sum(f < G.num_ws for f in firsts) / len(firsts) < 0.65


def test_style_mixing_mode_is_checked():
    with pytest.raises(ValueError, match="style_mixing_mode"):
        tiny_generator(16, style_mixing_mode="per-pixel")


def test_no_style_mixing_in_eval_or_with_probability_zero():
    G = tiny_generator(16, style_mixing_prob=0.0).train()
    torch.testing.assert_close(G.styles(z()), G.mapping(z()), rtol=0, atol=0)
    G = tiny_generator(16).eval()
    torch.testing.assert_close(G.styles(z()), G.mapping(z()), rtol=0, atol=0)


@pytest.mark.parametrize("mixing", [0.0, 0.9])
def test_w_avg_moves_only_in_training_towards_the_batch_mean_of_w(mixing):
    G = tiny_generator(16, style_mixing_prob=mixing)
    before = G.w_avg.clone()
    G(z(), noise_mode="const")
    assert torch.equal(G.w_avg, before)
    batch_mean = G.mapping(z())[:, 0].mean(0)
    G.train()
    G(z(), noise_mode="const")
    torch.testing.assert_close(G.w_avg, batch_mean + 0.995 * (before - batch_mean))
    assert "mapping.w_avg" in G.state_dict() and not G.w_avg.requires_grad


def test_noise_modes(G):
    ws = G.mapping(z())
    const = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), const, rtol=0, atol=0)
    assert not torch.allclose(G.synthesis(ws, noise_mode="none"), const, atol=1e-3)
    first, second = G.synthesis(ws), G.synthesis(ws)
    assert not torch.allclose(first, second, atol=1e-3)
    torch.manual_seed(3)
    again = G.synthesis(ws)
    torch.manual_seed(3)
    torch.testing.assert_close(G.synthesis(ws), again, rtol=0, atol=0)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_const_noise_is_the_registered_buffer(G):
    ws = G.mapping(z())
    const = G.synthesis(ws, noise_mode="const")
    saved = G.synthesis.const_noise(4).clone()
    with torch.no_grad():
        G.synthesis.const_noise(4).mul_(2)
    try:
        assert not torch.allclose(G.synthesis(ws, noise_mode="const"), const, atol=1e-3)
    finally:
        G.synthesis.const_noise(4).copy_(saved)


def test_fade_in_blends_the_top_level_with_the_lower_one_upsampled(G):
    ws = G.mapping(z())
    top = G.synthesis(ws, noise_mode="const", lod=0.0)
    lower = G.synthesis(ws, noise_mode="const", lod=1.0)
    assert top.shape[-1] == 16 and lower.shape[-1] == 8
    assert G.synthesis(ws, noise_mode="const", lod=2.0).shape[-1] == 4
    for lod in (0.25, 0.75):
        want = torch.lerp(upsample2d(lower), top, 1 - lod)
        torch.testing.assert_close(G.synthesis(ws, noise_mode="const", lod=lod), want)
    almost_one = G.synthesis(ws, noise_mode="const", lod=1 - 2 ** -20)  # fade-in weight -> 0
    torch.testing.assert_close(almost_one, upsample2d(lower))
    with pytest.raises(ValueError, match="lod"):
        G.synthesis(ws, lod=2.5)


def test_lower_levels_ignore_the_styles_of_inactive_layers(G):
    ws = G.mapping(z())
    changed = ws.clone()
    changed[:, 4:] = torch.randn_like(changed[:, 4:])
    torch.testing.assert_close(G.synthesis(changed, noise_mode="const", lod=1.0),
                               G.synthesis(ws, noise_mode="const", lod=1.0), rtol=0, atol=0)


def test_state_dict_round_trip():
    G = tiny_generator(16, seed=0)
    other = tiny_generator(16, seed=5)
    want = G(z(), noise_mode="const")
    assert not torch.allclose(other(z(), noise_mode="const"), want)
    other.load_state_dict(G.state_dict())
    torch.testing.assert_close(other(z(), noise_mode="const"), want, rtol=0, atol=0)
    torch.testing.assert_close(other.w_avg, G.w_avg, rtol=0, atol=0)


def test_training_gradients_reach_every_parameter_in_use():
    G = tiny_generator(16).train()
    G(z(), lod=0.5).square().mean().backward()  # fading 16 px in over 8 px: 4 px ToRGB unused
    for name, p in G.named_parameters():
        if name.startswith("synthesis.to_rgb.b4."):
            assert p.grad is None
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
