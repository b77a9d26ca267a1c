from contextlib import nullcontext

import torch

from stylegan_fast.bench.conv_census import ConvRecorder
from stylegan_fast.models import Discriminator
from stylegan_fast.ops import use_backend
from stylegan_fast.train import loss
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


def small_discriminator() -> tuple[Discriminator, torch.Tensor]:
    """A float64 D at 32 px (three blocks, minibatch stddev) and a batch of reals for it."""
    torch.manual_seed(0)
    D = Discriminator(32, img_channels=3, channel_base=64, channel_max=8).double()
    return D, torch.randn(4, 3, 32, 32, dtype=torch.float64)


def test_r1_backward_reaches_every_weight_and_matches_the_eager_backend():
    """The layers' own convolution (``ref``: R1's first pass computes no weight gradient) and
    PyTorch's (``eager``) give the same gradient of the penalty for every parameter of D."""
    D, reals = small_discriminator()
    used = [(name, p) for name, p in D.named_parameters()  # lod 0: the 32 px FromRGB only
            if not name.startswith("from_rgb.") or name.startswith("from_rgb.b32.")]

    def penalty_gradients(backend: str) -> dict:
        with use_backend(backend):
            _, r1 = r1_penalty(D, reals, nullcontext())
            grads = torch.autograd.grad(r1.sum(), [p for _, p in used], allow_unused=True)
        return {name: torch.zeros_like(p) if g is None else g  # unused: a zero gradient
                for (name, p), g in zip(used, grads)}

    ref, eager = penalty_gradients("ref"), penalty_gradients("eager")
    for name, _ in used:
        torch.testing.assert_close(ref[name], eager[name], rtol=1e-9, atol=1e-15, msg=name)
    weights = [name for name, _ in used if name.endswith("weight")]
    assert len(weights) == 10 and all(ref[name].abs().max() > 0 for name in weights)


def test_r1_first_pass_computes_no_weight_gradient(monkeypatch):
    """Inside r1_penalty (D's forward and the gradient w.r.t. the images) no convolution
    computes a weight gradient (a ``convolution_backward``); without
    ``no_weight_gradients`` every layer would, and the penalty's backward does."""
    D, reals = small_discriminator()

    def weight_gradient_calls(run) -> int:
        with use_backend("ref"), ConvRecorder() as recorder:
            run()
        return sum(call.kind == "backward" for call in recorder.calls)

    assert weight_gradient_calls(lambda: r1_penalty(D, reals, nullcontext())) == 0
    assert all(p.grad is None for p in D.parameters())
    layers = sum(p.dim() == 4 for name, p in D.named_parameters()
                 if name.startswith(("blocks.", "epilogue.", "from_rgb.b32.")))
    assert weight_gradient_calls(lambda: r1_penalty(D, reals, nullcontext())[1].sum()
                                 .backward()) >= layers
    monkeypatch.setattr(loss, "no_weight_gradients", nullcontext)
    assert weight_gradient_calls(lambda: r1_penalty(D, reals, nullcontext())) == layers


def test_r1_takes_the_loss_scale_as_a_number_or_a_device_scalar():
    D, reals = small_discriminator()
    with use_backend("ref"):
        plain = r1_penalty(D, reals, nullcontext())[1]
        as_float = r1_penalty(D, reals, nullcontext(), loss_scale=1024.0)[1]
        as_tensor = r1_penalty(D, reals, nullcontext(), loss_scale=torch.tensor(1024.0))[1]
    assert torch.equal(as_float, as_tensor) and as_tensor.dtype == torch.float64
    torch.testing.assert_close(as_float, plain)


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
