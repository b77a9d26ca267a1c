"""The ``eager`` backend: each op's plain differentiable definition, with no custom op in the way.

It is what the benchmarks' ``eager`` and ``compile`` baselines run, so it must be exactly the
``*_reference`` functions (same values, same gradients, same autograd graph), never be chosen by
``auto``, and compile with ``fullgraph=True`` into a graph of ordinary PyTorch ops.
"""
import pytest
import torch

from stylegan_fast import ops
from stylegan_fast.ops import backends

from .helpers import OpNamespaces, rand


def op_calls(n=2, c=5, h=6, w=7):
    """(public op, its reference, arguments) for every op, fresh random inputs, explicit noise."""
    def args(*shapes):
        return [rand(shape) for shape in shapes]
    noise = rand((n, 1, h, w), grad=False)
    return {
        "bias_act": (ops.bias_act, ops.bias_act_reference, args((n, c, h, w), (c,)), {}),
        "noise_inject": (ops.noise_inject, ops.noise_inject_reference,
                         args((n, c, h, w), (c,)) + [noise], {}),
        "adain": (ops.adain, ops.adain_reference, args((n, c, h, w), (n, c), (n, c)), {}),
        "style_epilogue": (ops.style_epilogue, ops.style_epilogue_reference,
                           args((n, c, h, w), (c,), (n, c), (n, c), (c,)) + [noise],
                           {"alpha": 0.3, "gain": 1.5}),
    }


def value_and_grads(fn, args, kwargs, dy):
    y = fn(*args, **kwargs)
    leaves = [a for a in args if a.requires_grad]
    return [y, *torch.autograd.grad(y, leaves, dy)]


@pytest.mark.parametrize("op", ["bias_act", "noise_inject", "adain", "style_epilogue"])
def test_eager_is_the_reference_function_without_custom_ops(op):
    public, reference, args, kwargs = op_calls()[op]
    dy = torch.randn_like(args[0])
    want = value_and_grads(reference, args, kwargs, dy)
    for backend in ("eager", "ref"):
        with ops.use_backend(backend), OpNamespaces() as seen:
            got = value_and_grads(public, args, kwargs, dy)
        assert ("stylegan_fast" in seen.namespaces) == (backend == "ref"), (backend, seen)
        if backend == "eager":  # the same computation, so the same bits
            assert all(torch.equal(g, w) for g, w in zip(got, want))
        else:
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_eager_is_registered_available_and_never_chosen_by_auto():
    status = ops.available_backends("cpu")["eager"]
    assert status.available and "nothing fused" in status.reason
    assert ops.resolve_backend("style_epilogue", torch.device("cpu")) != "eager"
    with ops.use_backend("eager"):
        assert ops.resolve_backend("style_epilogue", torch.device("cpu")) == "eager"
    for op in ("bias_act", "noise_inject", "adain", "style_epilogue"):
        assert backends.get_impl(op, "eager") is getattr(ops, f"{op}_reference")


def test_eager_with_generated_noise_draws_from_torch_generator():
    x, strength = rand((2, 3, 4, 5), grad=False), rand((3,), grad=False)
    with ops.use_backend("eager"):
        torch.manual_seed(7)
        first = ops.noise_inject(x, strength)
    torch.manual_seed(7)
    assert torch.equal(first, ops.noise_inject_reference(x, strength))


def layer(x, b, s, sb, strength, noise):
    y = ops.bias_act(x, b, alpha=0.2, gain=2 ** 0.5)
    y = ops.noise_inject(y, strength, noise)
    y = ops.adain(y, s, sb)
    return ops.style_epilogue(y, b, s, sb, strength, noise)


@pytest.mark.parametrize("backend", ["eager", "ref"])
def test_compiled_under_eager_is_one_graph_of_plain_pytorch_ops(backend):
    """What the ``compile`` baseline gets: dynamo traces through the plain definitions."""
    torch._dynamo.reset()
    graphs = []

    def recording_compiler(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    n, c, h, w = 2, 3, 5, 4
    args = [rand((n, c, h, w)), rand((c,)), rand((n, c)), rand((n, c)), rand((c,)),
            rand((n, 1, h, w), grad=False)]
    with ops.use_backend(backend):
        want = layer(*args)
        got = torch.compile(layer, backend=recording_compiler, fullgraph=True)(*args)
    torch._dynamo.reset()
    torch.testing.assert_close(got, want)
    targets = [str(node.target) for gm in graphs for node in gm.graph.nodes]
    assert len(graphs) == 1
    assert any("stylegan_fast" in t for t in targets) == (backend == "ref"), targets
