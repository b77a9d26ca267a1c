import functools

import pytest
import torch

from stylegan_fast.nn import downsample2d, equalized, minibatch_stddev
from stylegan_fast.ops import bias_act_reference, use_backend

from .helpers import tiny_discriminator


def images(n=4, res=16, seed=2):
    return torch.randn(n, 3, res, res, generator=torch.Generator().manual_seed(seed))


def test_scores_and_layout():
    D = tiny_discriminator(16)
    assert D(images()).shape == (4, 1)
    head = D.epilogue
    assert head.conv.in_channels == 16 + 1 and head.dense.in_features == 16 * 16
    assert head.out.weight_scale == pytest.approx(16 ** -0.5)  # gain 1
    with pytest.raises(ValueError, match=r"\[N, 3, 8, 8\]"):
        D(images(), lod=1.0)


def test_stddev_feature_enters_the_4px_conv():
    D = tiny_discriminator(16)
    seen = {}
    D.epilogue.conv.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    D(images(8))
    x = seen["x"]
    torch.testing.assert_close(x, minibatch_stddev(x[:, :-1]))
    assert x[:, -1].unique().numel() == 2  # batch 8, groups of 4: two groups


def test_fade_in_blends_the_top_block_with_the_downsampled_image():
    D = tiny_discriminator(16)
    img = images()
    lower = D(downsample2d(img), lod=1.0)
    almost_one = D(img, lod=1 - 2 ** -20)  # fade-in weight of the 16 px level -> 0
    torch.testing.assert_close(almost_one, lower)
    assert not torch.allclose(D(img, lod=0.5), lower) and not torch.allclose(D(img), lower)
    assert D(downsample2d(downsample2d(img)), lod=2.0).shape == (4, 1)


def test_fade_in_is_linear_in_the_features_entering_the_lower_blocks():
    D = tiny_discriminator(16)
    img = images()
    seen = []
    D.blocks["b8"].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    for lod in (0.0, 0.6, 1.0):
        D(img if lod < 1 else downsample2d(img), lod=lod)
    top, mid, low = seen
    torch.testing.assert_close(mid, torch.lerp(low, top, 0.4))


def r1_penalty(D, img):
    """||grad_img D(img)||^2 summed over the batch, with the graph kept for a second backward."""
    img = img.detach().requires_grad_()
    (grad,) = torch.autograd.grad(D(img).sum(), img, create_graph=True)
    return grad.square().sum()


def test_r1_double_backward_matches_pure_pytorch_and_finite_differences(monkeypatch):
    D = tiny_discriminator(16).double()
    img = images().double()
    names = [n for n, _ in D.named_parameters()]
    params = list(D.parameters())
    # biases after the stddev feature (and the lower FromRGBs, unused at lod 0) drop out of R1
    grad_wrt_params = functools.partial(torch.autograd.grad, inputs=params, allow_unused=True,
                                        materialize_grads=True)
    with use_backend("ref"):
        penalty = r1_penalty(D, img)
        grads = grad_wrt_params(penalty)
    for name, g in zip(names, grads, strict=True):
        if not name.startswith(("from_rgb.b4", "from_rgb.b8")):
            assert not name.endswith("weight") or g.abs().sum() > 0, name
    # the same network with bias_act replaced by its plain-autograd definition
    monkeypatch.setattr(equalized, "bias_act", bias_act_reference)
    plain = grad_wrt_params(r1_penalty(D, img))
    for got, want in zip(grads, plain, strict=True):
        torch.testing.assert_close(got, want)
    # and a central difference along a random direction of all the weights (a small step: R1
    # jumps where a leaky ReLU input crosses zero)
    monkeypatch.undo()
    torch.manual_seed(0)
    direction = [torch.randn_like(p) for p in params]
    step = 1e-7

    def penalty_at(sign):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * step * d)
        try:
            with use_backend("ref"):
                return r1_penalty(D, img).item()
        finally:
            with torch.no_grad():
                for p, d in zip(params, direction, strict=True):
                    p.sub_(sign * step * d)

    numeric = (penalty_at(1) - penalty_at(-1)) / (2 * step)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction, strict=True)).item()
    assert analytic == pytest.approx(numeric, rel=1e-5)


def test_state_dict_round_trip():
    D, other = tiny_discriminator(16, seed=0), tiny_discriminator(16, seed=4)
    img = images()
    assert not torch.allclose(other(img), D(img))
    other.load_state_dict(D.state_dict())
    torch.testing.assert_close(other(img), D(img), rtol=0, atol=0)
