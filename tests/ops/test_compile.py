import torch

from stylegan_fast import ops


def layer(x, b, s, sb, strength, noise, w):
    """A toy generator layer using every op."""
    y = ops.bias_act(x, b, alpha=0.2, gain=2 ** 0.5)
    y = ops.noise_inject(y, strength, noise)
    y = ops.adain(y, s, sb)
    y = ops.style_epilogue(y * w, b, s, sb, strength, noise)
    return ops.style_epilogue(y, b, s, sb)


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    n, c, h, w = 2, 5, 6, 7
    args = [torch.randn(n, c, h, w).to(memory_format=torch.channels_last), torch.randn(c),
            torch.randn(n, c), torch.randn(n, c), torch.randn(c), torch.randn(n, 1, h, w),
            torch.randn(c, 1, 1)]
    args = [a.requires_grad_() for a in args]
    dy = torch.randn(n, c, h, w)
    eager_out = layer(*args)
    eager_grads = torch.autograd.grad(eager_out, args, dy)
    compiled = torch.compile(layer, fullgraph=True)
    out = compiled(*args)
    grads = torch.autograd.grad(out, args, dy)
    torch.testing.assert_close(out, eager_out)
    assert out.is_contiguous(memory_format=torch.channels_last)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_compiled_generated_noise_is_reproducible_and_fresh():
    torch._dynamo.reset()

    def layer_with_noise(x, b, s, sb, strength):
        y = ops.noise_inject(x, strength)
        return ops.style_epilogue(y, b, s, sb, strength)

    n, c, h, w = 2, 3, 5, 4
    args = [torch.randn(n, c, h, w), torch.randn(c), torch.randn(n, c), torch.randn(n, c),
            torch.randn(c)]
    compiled = torch.compile(layer_with_noise, fullgraph=True)
    torch.manual_seed(0)
    first, second = compiled(*args), compiled(*args)
    torch.manual_seed(0)
    again = compiled(*args)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, second)


def test_upfirdn2d_compiles_fullgraph():
    """StyleGAN2's resampling under torch.compile: the custom op is traced, not broken on."""
    torch._dynamo.reset()
    f = ops.setup_filter([1, 3, 3, 1])

    def block(x):
        return ops.downsample2d(torch.tanh(ops.upsample2d(x, f, padding=[0, 1, 1, 0])), f)

    x = torch.randn(2, 3, 6, 5).to(memory_format=torch.channels_last).requires_grad_()
    eager_out = block(x)
    (eager_grad,) = torch.autograd.grad(eager_out.square().sum(), x)
    compiled = torch.compile(block, fullgraph=True)
    out = compiled(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(grad, eager_grad)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_filtered_lrelu_compiles_fullgraph():
    """A StyleGAN3 layer's epilogue under torch.compile: the custom op and its masked backward
    are traced, and match eager, forward and gradients."""
    torch._dynamo.reset()
    fu = ops.setup_filter(list(range(1, 13)), separable=True)
    fd = ops.setup_filter([1, 3, 3, 1])

    def layer(x, b):
        return ops.filtered_lrelu(torch.tanh(x), fu, fd, b, up=2, down=2, padding=[11, 10, 10, 11],
                                  clamp=1.0)

    x = torch.randn(2, 3, 6, 5).to(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(3, requires_grad=True)
    eager_out = layer(x, b)
    eager_grads = torch.autograd.grad(eager_out.square().sum(), (x, b))
    compiled = torch.compile(layer, fullgraph=True)
    out = compiled(x, b)
    grads = torch.autograd.grad(out.square().sum(), (x, b))
    torch.testing.assert_close(out, eager_out)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want)
    assert out.is_contiguous(memory_format=torch.channels_last)
