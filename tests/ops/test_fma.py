"""stylegan_fast.ops.fma: a * b + c with gradients reduced to each operand's broadcast shape."""
import pytest
import torch

from stylegan_fast import ops
from stylegan_fast.ops import fma

SHAPES = [  # (a, b, c) that broadcast together
    ((2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 4)),
    ((2, 3, 5, 4), (2, 3, 1, 1), (2, 1, 5, 4)),   # StyleGAN's x * dcoefs + noise
    ((3, 1, 7), (1, 4, 1), (7,)),                  # every operand broadcast
    ((1,), (2, 3), (2, 1)),
    ((), (4, 2), ()),                              # 0-dim operands
    ((3,), (2, 1), (4, 2, 3)),                     # c the largest
]


def leaf(shape, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)


def operands(shapes, dtypes=(torch.float64,) * 3):
    return [leaf(shape, dtype, seed) for seed, (shape, dtype) in enumerate(zip(shapes, dtypes))]


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_value_and_gradients_are_the_definitions(shapes):
    a, b, c = operands(shapes)
    y = fma(a, b, c)
    want = a.detach() * b.detach() + c.detach()
    assert y.shape == want.shape
    torch.testing.assert_close(y, want, rtol=1e-15, atol=1e-15)
    dy = leaf(y.shape, seed=9).detach()
    da, db, dc = torch.autograd.grad(y, (a, b, c), dy)
    for got, operand, full in ((da, a, dy * b), (db, b, dy * a), (dc, c, dy)):
        assert got.shape == operand.shape
        torch.testing.assert_close(got, full.detach().sum_to_size(operand.shape),
                                   rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shapes", SHAPES[1:3], ids=str)
def test_gradcheck_and_gradgradcheck_in_float64(shapes):
    args = operands(shapes)
    assert torch.autograd.gradcheck(fma, args)
    assert torch.autograd.gradgradcheck(fma, args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_dtype_is_within_one_rounding_of_the_exact_result(dtype):
    a, b, c = operands(SHAPES[1], (dtype,) * 3)
    y = fma(a, b, c)
    assert y.dtype == dtype
    exact = a.detach().double() * b.detach().double() + c.detach().double()
    eps = torch.finfo(dtype).eps
    # one rounding of the result, plus the product's where a kernel rounds it first
    assert ((y.double() - exact).abs() <= 2 * eps * (exact.abs() + (a * b).detach().double().abs())
            + 1e-300).all()
    grads = torch.autograd.grad(y, (a, b, c), torch.ones_like(y))
    assert [g.dtype for g in grads] == [dtype] * 3


def test_operands_of_mixed_dtypes_promote_and_keep_their_gradients_dtype():
    a, b, c = operands(SHAPES[1], (torch.float16, torch.float32, torch.bfloat16))
    y = fma(a, b, c)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, a.float() * b + c.float())
    grads = torch.autograd.grad(y.sum(), (a, b, c))
    assert [g.dtype for g in grads] == [torch.float16, torch.float32, torch.bfloat16]


def test_under_torch_compile():
    a, b, c = operands(SHAPES[2], (torch.float32,) * 3)

    def loss(a, b, c):
        return fma(a, b, c).square().sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got, want = compiled(a, b, c), loss(a, b, c)
    torch.testing.assert_close(got, want)
    for g, w in zip(torch.autograd.grad(got, (a, b, c)), torch.autograd.grad(want, (a, b, c))):
        torch.testing.assert_close(g, w)


A = torch.zeros(2, 3)
BAD_CALLS = [
    ((A, 2.0, A), TypeError, "b must be a torch.Tensor, got float"),
    ((A.numpy(), A, A), TypeError, "a must be a torch.Tensor, got ndarray"),
    ((A, A, A.long()), TypeError, "c must be float16, bfloat16, float32 or float64"),
    ((A, torch.zeros(3, 2), A), ValueError,
     r"shapes of a \(2, 3\), b \(3, 2\) and c \(2, 3\) do not broadcast"),
    ((A, A, torch.zeros(5)), ValueError, "do not broadcast"),
]


@pytest.mark.parametrize("args,error,match", BAD_CALLS,
                         ids=[f"{i}-{m[:20]}" for i, (_, _, m) in enumerate(BAD_CALLS)])
def test_bad_arguments_are_named(args, error, match):
    with pytest.raises(error, match=match):
        fma(*args)


def test_exported_from_ops():
    assert ops.fma is fma
