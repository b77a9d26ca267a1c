"""The models under every backend, autocast, channels_last and torch.compile."""
import pytest
import torch

from stylegan_fast.ops import no_weight_gradients, use_backend

from ..ops.helpers import DEVICES, backends_for
from .helpers import Z_DIM, tiny_discriminator, tiny_generator


def z(n=2, device="cpu"):
    return torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(7)).to(device)


def assert_close_scaled(got, want, rel):
    """Max abs error within ``rel`` of the reference's largest magnitude."""
    scale = want.abs().max().clamp_min(1.0)
    err = (got.double() - want.double()).abs().max()
    assert err <= rel * scale, f"max error {err:.3g} > {rel} x {scale:.3g}"


def forward_backward(G, D, zs):
    """Images, scores and every parameter gradient of a D(G(z)) step (const noise)."""
    img = G(zs, noise_mode="const")
    score = D(img)
    params = [*G.parameters(), *D.parameters()]
    grads = torch.autograd.grad(score.sum(), params, allow_unused=True, materialize_grads=True)
    return [img.detach(), score.detach(), *grads]


@pytest.mark.parametrize("device,backend", [(d, b) for d in DEVICES for b in backends_for(d)
                                            if b != "ref"])
def test_every_backend_matches_ref(device, backend):
    G, D = tiny_generator(8).to(device), tiny_discriminator(8).to(device)
    with use_backend("ref"):
        want = forward_backward(G, D, z(device=device))
    with use_backend(backend):
        got = forward_backward(G, D, z(device=device))
    for got_t, want_t in zip(got, want, strict=True):
        assert_close_scaled(got_t, want_t, 1e-4)


AUTOCAST = [("cpu", torch.bfloat16), ("cpu", torch.float16)] + (
    [("cuda", torch.bfloat16), ("cuda", torch.float16)] if "cuda" in DEVICES else [])


@pytest.mark.parametrize("device,dtype", AUTOCAST, ids=lambda v: str(v).replace("torch.", ""))
def test_autocast_runs_in_low_precision_and_stays_close_to_float32(device, dtype):
    G, D = tiny_generator(16).to(device), tiny_discriminator(16).to(device)
    want_img = G(z(4, device), noise_mode="const")
    with torch.autocast(device, dtype=dtype):
        img = G(z(4, device), noise_mode="const")
        score = D(img)
        score.float().sum().backward()
    assert img.dtype == dtype and score.dtype == dtype
    rel = 0.1 if dtype == torch.bfloat16 else 0.02  # 8 vs 11 significant bits
    assert_close_scaled(img, want_img, rel)
    assert_close_scaled(score, D(img.float()), rel)
    grads = [p.grad for p in [*G.parameters(), *D.parameters()] if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(p.grad is not None for p in G.mapping.parameters())


def test_channels_last_gives_the_same_result_and_layout():
    G, D = tiny_generator(16), tiny_discriminator(16)
    want_img = G(z(4), noise_mode="const")
    want_score = D(want_img)
    G_cl, D_cl = (m.to(memory_format=torch.channels_last) for m in (G, D))
    img = G_cl(z(4), noise_mode="const")
    assert img.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(img, want_img, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(D_cl(img), want_score, rtol=1e-5, atol=1e-5)


def test_compiled_generator_matches_eager():
    """Inductor, forward (each generated C++ kernel costs ~1 s to build on CPU)."""
    torch._dynamo.reset()
    G = tiny_generator(8, mapping_layers=1)
    want = G(z(4), noise_mode="const")
    got = torch.compile(G, fullgraph=True)(z(4), noise_mode="const")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_whole_step_captures_as_one_graph_with_matching_gradients():
    """fullgraph capture of G and D and autograd through the captured graph (aot_eager: the
    graph runs without inductor's code generation)."""
    torch._dynamo.reset()
    G, D = tiny_generator(8, mapping_layers=2), tiny_discriminator(8)

    def generate_and_score(zs):
        img = G(zs, noise_mode="const")
        return img, D(img)

    want = forward_backward(G, D, z(4))
    img, score = torch.compile(generate_and_score, fullgraph=True, backend="aot_eager")(z(4))
    params = [*G.parameters(), *D.parameters()]
    grads = torch.autograd.grad(score.sum(), params, allow_unused=True, materialize_grads=True)
    for got_t, want_t in zip([img, score, *grads], want, strict=True):
        torch.testing.assert_close(got_t, want_t, rtol=1e-4, atol=1e-4)


def test_training_mode_captures_style_mixing_and_the_w_avg_update():
    torch._dynamo.reset()
    G = tiny_generator(8, mapping_layers=2).train()
    before = G.w_avg.clone()
    zs = z(4)
    img = torch.compile(G, fullgraph=True, backend="aot_eager")(zs, lod=0.5)
    img.square().mean().backward()
    batch_mean = G.eval().mapping(zs)[:, 0].mean(0)
    torch.testing.assert_close(G.w_avg, torch.lerp(batch_mean, before, 0.995))
    assert G.synthesis.const.grad.abs().sum() > 0


def r1_gradients(G, D, zs):
    """Every parameter gradient of R1 on generated images: the first pass (D's gradient w.r.t. the
    images) runs in ``no_weight_gradients`` with ``create_graph``, so the penalty's gradient needs
    the second derivative of every conv of D (plain and fused down) and reaches G's parameters
    (plain and fused up convs) through the images."""
    img = G(zs, noise_mode="const")
    score = D(img)
    params = [*G.parameters(), *D.parameters()]
    with no_weight_gradients():
        (grad,) = torch.autograd.grad(score.sum(), img, create_graph=True)
    return torch.autograd.grad(grad.square().sum(), params, allow_unused=True,
                               materialize_grads=True)


@pytest.mark.parametrize("backend", [b for b in backends_for("cpu") if b != "eager"])
def test_r1_gradients_of_g_and_d_match_eager(backend):
    """float64: ops.conv2d's derivatives (every backend but eager) against F.conv2d's own."""
    G = tiny_generator(16, mapping_layers=1, fused_upconv_min_res=16, progressive=False)
    D = tiny_discriminator(16, fused_downconv_min_res=16, progressive=False)
    G, D, zs = G.double(), D.double(), z(3).double()
    with use_backend("eager"):
        want = r1_gradients(G, D, zs)
    with use_backend(backend):
        got = r1_gradients(G, D, zs)
    names = [*(n for n, _ in G.named_parameters()), *(f"D.{n}" for n, _ in D.named_parameters())]
    # D is piecewise linear in its input after the minibatch stddev: the biases there are the only
    # parameters R1's gradient does not depend on
    unreached = {n for n, g in zip(names, want, strict=True) if not g.abs().sum() > 0}
    assert unreached == {"D.epilogue.conv.bias", "D.epilogue.dense.bias", "D.epilogue.out.bias"}
    for got_t, want_t in zip(got, want, strict=True):
        torch.testing.assert_close(got_t, want_t, rtol=1e-9, atol=1e-11)
