"""The fused ops' two entry points: the ``torch.library`` custom op that tracing sees, and an
eager fast path that ordinary calls take.

A custom op with a Python autograd formula costs tens of microseconds per call and per backward
(DESIGN.md section 11), more than a small layer's kernels. :func:`fused_op` defines the same op
twice from one Python function, its fake kernel, its backward and its ``setup_context``:

* ``op.custom_op``: the ``torch.library`` custom op ``stylegan_fast::<name>``, with the fake kernel
  and the autograd formula. ``torch.compile``, ``torch.export``, ``make_fx``, ``opcheck``, fake
  and meta tensors, ``torch.jit.trace``, functorch transforms and every ``TorchDispatchMode``
  (e.g. a FLOP counter or the convolution census) get this one: they see one node per op.
* the eager fast path: a plain ``torch.autograd.Function`` with the same forward,
  ``setup_context`` and backward, so it saves the same tensors, computes the same values and
  raises the same errors; and when no gradient is wanted, the function itself, with no autograd
  boundary at all.

``op(*args)`` takes the custom op when :func:`traced` says so, else the fast path. The backward
formulas call the backward ops the same way, so a backward of an eager call stays on the fast
path, and one traced by AOTAutograd (FakeTensors) goes through the custom ops.
:func:`custom_ops_only` sends every call through the custom ops (tests, and ``stylegan-fast bench
--overhead``, compare the two).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch

NAMESPACE = "stylegan_fast"
_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)
_custom_ops_only = [False]


@contextlib.contextmanager
def custom_ops_only(enabled: bool = True) -> Iterator[None]:
    """Inside the block, every fused op call goes through its ``torch.library`` custom op (the
    path tracing takes) instead of the eager fast path; ``enabled=False`` restores the fast path
    in the block."""
    previous = _custom_ops_only[0]
    _custom_ops_only[0] = bool(enabled)
    try:
        yield
    finally:
        _custom_ops_only[0] = previous


def _tracing() -> bool:
    """Whether any call now must go through the custom ops: inside :func:`custom_ops_only`, under
    ``torch.compile`` or export, a ``TorchDispatchMode`` (FakeTensorMode, make_fx's proxy mode, a
    FLOP counter, ...), ``torch.jit.trace`` or a functorch transform (vmap, grad)."""
    return (_custom_ops_only[0] or torch.compiler.is_compiling()
            or torch._C._len_torch_dispatch_stack() > 0
            or torch._C._get_tracing_state() is not None
            or torch._C._are_functorch_transforms_active())


def _traced_tensor(t: torch.Tensor) -> bool:
    """A tensor only the custom op handles: a subclass (FakeTensor, FunctionalTensor, DTensor,
    ...; ``nn.Parameter`` excepted) or a meta tensor."""
    return type(t) not in _PLAIN_TENSORS or t.is_meta


def traced(args) -> bool:
    """Whether a call with ``args`` must go through the custom op (:func:`_tracing`, or a tensor
    in ``args`` that :func:`_traced_tensor` says so of)."""
    return _tracing() or any(isinstance(a, torch.Tensor) and _traced_tensor(a) for a in args)


class FusedOp:
    """One fused op: ``custom_op`` for tracing, an ``autograd.Function`` for eager calls. Built
    by :func:`fused_op`; ``register_fake`` and ``register_autograd`` as on a custom op."""

    def __init__(self, name: str, forward: Callable):
        self.name = name
        self.forward = forward  # the op's math on real tensors (calls a backend's implementation)
        self.custom_op = torch.library.custom_op(f"{NAMESPACE}::{name}", forward, mutates_args=())
        self.function: Optional[type] = None  # the eager autograd.Function, once autograd is set
        schema = self.custom_op._opoverload._schema
        # positions of the tensor arguments (Tensor or Tensor?): the only ones a call inspects
        optional_tensor = torch._C.OptionalType.ofTensor()
        self.tensor_args = tuple(i for i, a in enumerate(schema.arguments)
                                 if a.type.isSubtypeOf(optional_tensor))

    def register_fake(self, fake: Callable) -> Callable:
        """Shapes, dtypes and strides of the outputs (the custom op's fake kernel)."""
        self.custom_op.register_fake(fake)
        return fake

    def register_autograd(self, backward: Callable, *, setup_context: Callable) -> None:
        """The op's backward (one gradient per input, None for non-tensors) and what it saves:
        registered on the custom op and used by the eager ``autograd.Function``."""
        self.custom_op.register_autograd(backward, setup_context=setup_context)
        compute = self.forward

        # The forward(ctx, *args) form: a Function with a separate setup_context binds its
        # arguments to forward's signature (inspect.signature) on every call.
        def forward(ctx, *args):
            output = compute(*args)
            setup_context(ctx, args, output)
            # Gradients of unused outputs: the custom op's autograd passes zeros for all of
            # them; here zeros are made only for floating outputs and only when backward runs
            # (integer outputs, bias_act's mask, have no gradient; backward formulas ignore it).
            ctx.set_materialize_grads(False)
            outputs = output if isinstance(output, tuple) else (output,)
            ctx.output_meta = tuple((o.shape, o.dtype, o.device) if o.is_floating_point()
                                    else None for o in outputs)
            return output

        def eager_backward(ctx, *grads):
            if any(g is None for g in grads):
                grads = tuple(torch.zeros(meta[0], dtype=meta[1], device=meta[2])
                              if g is None and meta is not None else g
                              for g, meta in zip(grads, ctx.output_meta))
            return backward(ctx, *grads)

        self.function = type(f"{self.name}_eager", (torch.autograd.Function,), {
            "forward": staticmethod(forward), "backward": staticmethod(eager_backward)})
        # Function.apply's Python wrapper binds arguments and unwraps functorch tensors (neither
        # needed here: functorch transforms take the custom op); its C++ base does the work.
        self._apply = super(torch.autograd.Function, self.function).apply

    def __call__(self, *args):
        if _tracing():
            return self.custom_op(*args)
        grad = False
        for i in self.tensor_args:
            t = args[i]
            if t is not None:
                if _traced_tensor(t):
                    return self.custom_op(*args)
                grad = grad or t.requires_grad
        if grad and self.function is not None and torch.is_grad_enabled():
            return self._apply(*args)
        return self.forward(*args)


def fused_op(name: str) -> Callable[[Callable], FusedOp]:
    """Decorator: the :class:`FusedOp` ``stylegan_fast::<name>`` computed by the decorated
    function (annotated as ``torch.library.custom_op`` requires; it must not mutate or return
    its inputs)."""
    def define(forward: Callable) -> FusedOp:
        return FusedOp(name, forward)
    return define


def no_double_backward(backward_op: FusedOp, op_name: str) -> None:
    """Register on ``backward_op`` an autograd formula that raises a clear error: differentiating
    ``op_name``'s backward (create_graph=True, then backward again) is not supported."""
    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise RuntimeError(
            f"stylegan_fast.ops.{op_name} does not support double backward (a second derivative "
            f"through it, e.g. torch.autograd.grad(..., create_graph=True) then backward). "
            f"Where a second derivative is needed, run it on the 'eager' backend "
            f"(stylegan_fast.ops.use_backend('eager')) or call "
            f"stylegan_fast.ops.{op_name}_reference.")

    backward_op.register_autograd(backward, setup_context=setup_context)
