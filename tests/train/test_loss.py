from contextlib import nullcontext

import torch

from stylegan_fast.models import Discriminator
from stylegan_fast.ops import use_backend
from stylegan_fast.train.ema import make_ema, update_ema
from stylegan_fast.train.loss import discriminator_loss, generator_loss, r1_penalty, r1_weight


def test_logistic_losses():
    fake, real = torch.tensor([[0.5], [-2.0]]), torch.tensor([[1.0], [3.0]])
    torch.testing.assert_close(generator_loss(fake), -torch.log(torch.sigmoid(fake)).flatten())
    expected = -torch.log(1 - torch.sigmoid(fake)) - torch.log(torch.sigmoid(real))
    torch.testing.assert_close(discriminator_loss(fake, real), expected.flatten())
    assert generator_loss(fake.bfloat16()).dtype == torch.float32


def test_r1_of_a_linear_critic_is_its_weight_norm():
    w = torch.randn(1, 3, 4, 4)

    def D(x):
        return (x * w).sum(dim=[1, 2, 3])[:, None]

    reals = torch.randn(5, 3, 4, 4)
    scores, r1 = r1_penalty(D, reals, nullcontext(), loss_scale=1024.0)
    torch.testing.assert_close(r1, w.square().sum().expand(5))
    torch.testing.assert_close(scores, D(reals))
    assert not reals.requires_grad


def test_r1_double_backward_through_the_discriminator_matches_finite_differences():
    torch.manual_seed(0)
    D = Discriminator(8, img_channels=1, channel_base=16, channel_max=4).double()
    reals = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    weight = D.epilogue.out.weight  # the last layer's weight scales the whole input gradient

    def penalty():
        return r1_penalty(D, reals, nullcontext())[1].sum()

    with use_backend("ref"):
        (grad,) = torch.autograd.grad(penalty(), weight)
        eps, numeric = 1e-6, torch.zeros(weight.numel(), dtype=torch.float64)
        for i in range(weight.numel()):
            weight.data.view(-1)[i] += eps
            up = penalty().item()
            weight.data.view(-1)[i] -= 2 * eps
            down = penalty().item()
            weight.data.view(-1)[i] += eps
            numeric[i] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad.flatten(), numeric, rtol=1e-4, atol=1e-6)
    assert grad.abs().sum() > 0


def test_lazy_r1_weight():
    assert [r1_weight(10.0, 4, step) for step in range(5)] == [20.0, 0.0, 0.0, 0.0, 20.0]
    assert r1_weight(10.0, 1, 7) == 5.0 and r1_weight(0.0, 1, 0) == 0.0


def test_ema_update():
    G = torch.nn.Linear(2, 2)
    G.register_buffer("w_avg", torch.zeros(2))
    G_ema = make_ema(G)
    assert not G_ema.training and not any(p.requires_grad for p in G_ema.parameters())
    before = G_ema.weight.clone()
    with torch.no_grad():
        G.weight.add_(1.0)
        G.w_avg.fill_(3.0)
    update_ema(G_ema, G, 0.75)
    torch.testing.assert_close(G_ema.weight, 0.75 * before + 0.25 * G.weight)
    assert torch.equal(G_ema.w_avg, G.w_avg)
