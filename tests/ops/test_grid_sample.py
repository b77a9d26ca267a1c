"""stylegan_fast.ops.grid_sample: F.grid_sample's forward (bilinear, zeros, align_corners=False)
with an input gradient differentiable to any order, against a bilinear gather written here."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from stylegan_fast import ops
from stylegan_fast.ops import grid_sample

NOT_IMPLEMENTED = "derivative for aten::grid_sampler_2d_backward is not implemented"


def definition(x, grid):
    """Bilinear sampling written out: grid (x, y) in [-1, 1] spans the input's pixel edges
    (align_corners=False), pixel (i, j) has weight (1 - |ix - j|)(1 - |iy - i|) for the four
    neighbours of (ix, iy), and neighbours outside the input read zero. Plain autograd
    differentiates it to any order (floor's derivative is 0)."""
    n, c, h, w = x.shape
    _, oh, ow, _ = grid.shape
    ix = ((grid[..., 0] + 1) * w - 1) / 2
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    flat = x.reshape(n, c, h * w)
    out = 0
    for oy, ox, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                           (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + ox, y0 + oy
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().reshape(n, 1, oh * ow)
        values = flat.gather(2, index.expand(n, c, oh * ow)).reshape(n, c, oh, ow)
        out = out + values * (weight * inside)[:, None]
    return out


def plain(x, grid):
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_grid(n, oh, ow, dtype=torch.float64, spread=1.3, seed=0):
    """Uniform in [-spread, spread] (beyond [-1, 1]: samples partly or wholly outside), plus a
    few coordinates far outside."""
    gen = torch.Generator().manual_seed(seed)
    grid = (torch.rand(n, oh, ow, 2, generator=gen, dtype=torch.float64) * 2 - 1) * spread
    grid[0, 0, 0] = torch.tensor([5.0, -0.3])
    grid[-1, -1, -1] = torch.tensor([0.2, -7.5])
    return grid.to(dtype)


def affine_grid(n, h, w, dtype=torch.float64, seed=0):
    """ADA's geometric augment: a random rotation, scale and translation of the image."""
    gen = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=gen, dtype=torch.float64) * 6.3
    scale = 0.7 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64)
    shift = 0.2 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    theta = torch.stack([torch.stack([angle.cos() * scale, -angle.sin() * scale, shift[:, 0]], 1),
                         torch.stack([angle.sin() * scale, angle.cos() * scale, shift[:, 1]], 1)],
                        1)
    return F.affine_grid(theta, [n, 1, h, w], align_corners=False).to(dtype)


def leaf(shape, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)


SHAPES = [  # (input [N, C, H, W], output (OH, OW))
    ((2, 3, 5, 7), (4, 6)),
    ((1, 1, 1, 1), (3, 2)),
    ((3, 2, 9, 4), (9, 4)),
    ((2, 5, 2, 11), (1, 13)),
]


@pytest.mark.parametrize("shape,out", SHAPES, ids=str)
def test_forward_and_gradients_match_the_definition(shape, out):
    x = leaf(shape)
    grid = random_grid(shape[0], *out).requires_grad_(True)
    dy = leaf((shape[0], shape[1], *out), seed=2).detach()
    ours = [grid_sample(x, grid), *torch.autograd.grad(grid_sample(x, grid), (x, grid), dy)]
    want = [definition(x, grid), *torch.autograd.grad(definition(x, grid), (x, grid), dy)]
    for name, got, expected in zip(("output", "dx", "dgrid"), ours, want):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_dtype_runs_pytorchs_kernels(dtype):
    """Forward and both gradients are F.grid_sample's own, in the input's dtype; float32 is
    within 1e-5 of the float64 definition."""
    x, grid = leaf((2, 3, 6, 5), dtype), random_grid(2, 7, 4, dtype).requires_grad_(True)
    dy = leaf((2, 3, 7, 4), dtype, seed=3).detach()
    y = grid_sample(x, grid)
    ours = [y, *torch.autograd.grad(y, (x, grid), dy)]
    y_plain = plain(x, grid)
    want = [y_plain, *torch.autograd.grad(y_plain, (x, grid), dy)]
    for got, expected in zip(ours, want):
        assert got.dtype == dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with torch.no_grad():  # no graph: F.grid_sample itself
        torch.testing.assert_close(grid_sample(x, grid), y_plain.detach(), rtol=0, atol=0)
    if dtype == torch.float32:
        x64, grid64 = x.detach().double(), grid.detach().double()
        torch.testing.assert_close(y.double(), definition(x64, grid64), rtol=1e-5, atol=1e-5)


def test_gradcheck_and_gradgradcheck_in_float64():
    x, grid = leaf((2, 3, 5, 4)), random_grid(2, 3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(grid_sample, (x, grid))
    # the input gradient's derivatives w.r.t. the output gradient and the input (to 3rd order)
    fixed = grid.detach()
    assert torch.autograd.gradgradcheck(lambda x: grid_sample(x, fixed), (x,))
    dy = leaf((2, 3, 3, 4), seed=4)
    input_grad = lambda x, dy: torch.autograd.grad(  # noqa: E731
        grid_sample(x, fixed), x, dy, create_graph=True)[0]
    assert torch.autograd.gradgradcheck(input_grad, (x, dy))


def test_the_input_gradients_derivative_wrt_the_grid_is_exact():
    """d(dx)/d grid, which NVIDIA's gradfix left out: gradcheck, and the definition's."""
    x, grid = leaf((2, 2, 4, 5)).detach(), random_grid(2, 3, 3).requires_grad_(True)
    dy, g = leaf((2, 2, 3, 3), seed=5), leaf((2, 2, 4, 5), seed=6).detach()

    def input_grad(sample, dy, grid):
        x_ = x.clone().requires_grad_(True)
        return torch.autograd.grad(sample(x_, grid), x_, dy, create_graph=True)[0]

    assert torch.autograd.gradcheck(lambda dy, grid: input_grad(grid_sample, dy, grid),
                                    (dy, grid))
    ours = torch.autograd.grad(input_grad(grid_sample, dy, grid), (dy, grid), g)
    want = torch.autograd.grad(input_grad(definition, dy, grid), (dy, grid), g)
    for got, expected in zip(ours, want):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def torch_differentiates_grid_sampler_backward() -> bool:
    """Whether this torch has a derivative for aten::grid_sampler_2d_backward (older torch 2.x
    raises NOT_IMPLEMENTED; 2.14 has one)."""
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    grid = torch.zeros(1, 1, 1, 2, dtype=torch.float64, requires_grad=True)
    (dx,) = torch.autograd.grad(plain(x, grid).sum(), x, create_graph=True)
    try:
        dx.sum().backward()
    except RuntimeError as exc:
        assert NOT_IMPLEMENTED in str(exc)
        return False
    return True


def test_the_grid_gradient_is_differentiable_as_far_as_torch_allows():
    """dgrid is PyTorch's grid_sampler_2d_backward: its derivatives are this torch's own."""
    x, grid = leaf((1, 2, 4, 3)), random_grid(1, 3, 2).requires_grad_(True)
    if torch_differentiates_grid_sampler_backward():
        assert torch.autograd.gradgradcheck(grid_sample, (x, grid))
    else:
        (dgrid,) = torch.autograd.grad(grid_sample(x, grid).sum(), grid, create_graph=True)
        with pytest.raises(RuntimeError, match=NOT_IMPLEMENTED):
            dgrid.square().sum().backward()


class OpRecorder(TorchDispatchMode):
    """The aten ops dispatched inside the block (backward passes run inside it included)."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def r1_gradients(sample, D, x, grid):
    """R1 through an augment: |d D(sample(x, grid)).sum() / dx|^2, then its gradient w.r.t.
    D's weights (and x, and the grid where it requires grad)."""
    x = x.detach().requires_grad_(True)
    (dx,) = torch.autograd.grad(D(sample(x, grid)).sum(), x, create_graph=True)
    leaves = [x, *D.parameters()] + ([grid] if grid.requires_grad else [])
    return torch.autograd.grad(dx.square().sum(), leaves, allow_unused=True,
                               materialize_grads=True)  # the last bias: none


def small_discriminator():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(4, 4, 3, stride=2), torch.nn.Softplus(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 1)).double()


def test_plain_grid_sample_double_backward_on_this_torch_and_ours():
    """NVIDIA's reason for its gradfix: F.grid_sample's double backward raised on torch 1.9 to
    2.x. Where this torch still raises, ours works; where it has one (2.14), ours agrees."""
    D = small_discriminator()
    x, grid = leaf((2, 3, 8, 8)), affine_grid(2, 8, 8)
    ours = r1_gradients(grid_sample, D, x, grid)
    if torch_differentiates_grid_sampler_backward():
        for got, want in zip(ours, r1_gradients(plain, D, x, grid)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    else:
        with pytest.raises(RuntimeError, match=NOT_IMPLEMENTED):
            r1_gradients(plain, D, x, grid)


@pytest.mark.parametrize("grid_requires_grad", [False, True], ids=["grid", "learned-grid"])
def test_r1_penalty_through_grid_sample_matches_the_definition(grid_requires_grad):
    D = small_discriminator()
    x = leaf((2, 3, 8, 8))
    grid = affine_grid(2, 8, 8).requires_grad_(grid_requires_grad)
    with OpRecorder() as recorder:
        ours = r1_gradients(grid_sample, D, x, grid)
    want = r1_gradients(definition, D, x, grid)
    assert all(g.abs().sum() > 0 for g in ours if g.dim() > 1)  # x, the weights (, the grid)
    for got, expected in zip(ours, want):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    if not grid_requires_grad:  # d(dx)/d dy is grid_sample again: no gathers or scatters
        assert "aten.grid_sampler_2d" in recorder.ops
        assert not recorder.ops & {"aten.gather", "aten.scatter_add", "aten.index_put"}


def test_under_torch_compile():
    x, grid = leaf((2, 3, 6, 5), torch.float32), random_grid(2, 4, 4, torch.float32)
    grid.requires_grad_(True)

    def loss(x, grid):
        return grid_sample(x, grid).square().sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = compiled(x, grid)
    want = loss(x, grid)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (x, grid)), torch.autograd.grad(want, (x, grid))):
        torch.testing.assert_close(a, b)


def test_autocast_promotes_to_the_wider_dtype_as_for_f_grid_sample():
    x, grid = leaf((1, 2, 4, 3), torch.float32), random_grid(1, 3, 2, torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = grid_sample(x, grid)
        want = plain(x, grid)
    assert y.dtype == want.dtype == torch.float32
    torch.testing.assert_close(y, want, rtol=0, atol=0)


X = torch.zeros(2, 3, 4, 4)
GRID = torch.zeros(2, 5, 5, 2)
BAD_CALLS = [
    ((X[0], GRID), ValueError, "input must be 4-D"),
    ((X[None], GRID), ValueError, "input must be 4-D"),
    ((X, GRID[0]), ValueError, "grid must be 4-D"),
    ((X, GRID[..., :1]), ValueError, r"grid must be 4-D \[N, OH, OW, 2\].*\(2, 5, 5, 1\)"),
    ((X, torch.zeros(3, 5, 5, 2)), ValueError, "grid has batch size 3 but input has 2"),
    ((X, GRID.double()), TypeError, "grid has dtype torch.float64 but input has torch.float32"),
    ((X.long(), GRID), TypeError, "input must be float16, bfloat16, float32 or float64"),
    ((X, GRID.int()), TypeError, "grid must be float16, bfloat16, float32 or float64"),
    ((X.numpy(), GRID), TypeError, "input must be a torch.Tensor, got ndarray"),
    ((X, [[0.0, 0.0]]), TypeError, "grid must be a torch.Tensor, got list"),
]


@pytest.mark.parametrize("args,error,match", BAD_CALLS,
                         ids=[f"{i}-{m[:20]}" for i, (_, _, m) in enumerate(BAD_CALLS)])
def test_bad_arguments_are_named(args, error, match):
    with pytest.raises(error, match=match):
        grid_sample(*args)


def test_exported_from_ops():
    assert ops.grid_sample is grid_sample
