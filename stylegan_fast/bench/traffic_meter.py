"""A meter of the bytes that Triton kernels load and store when run in Triton's interpreter.

With ``TRITON_INTERPRET=1`` (set before the kernels are decorated) Triton runs each program in
Python on CPU tensors. While :func:`metering` is active, every memory access an interpreted program
makes is counted as the number of active elements (mask true) times the element size:

* ``tl.load`` / ``tl.store``, masked or not (the interpreter's builder routes both, and the tensor
  descriptor loads, stores, gathers and scatters, through ``create_masked_load`` / ``_store``);
* atomics (``create_atomic_rmw``, ``create_atomic_cas``): a read and a write of each element.

Each access is attributed by address to a *buffer*: the storage of a tensor passed to the
launched kernel, named after the first kernel parameter that received it (``x_ptr`` -> ``x``), or
after the caller's name for that tensor (:meth:`TrafficMeter.traffic`). An address in no buffer is
counted as ``unattributed`` (never dropped). The meter keeps every such tensor alive until it is
discarded, so no later allocation of the same measurement reuses an address. Torch operations
between kernels (e.g. summing per-program partials) are not kernel traffic and are not counted.

The hooks (on ``triton.runtime.interpreter``'s builder instance and ``GridExecutor.__call__``)
are installed on entering :func:`metering` and removed on leaving it, also on error. Metering
CUDA tensors raises: the interpreter runs them from host copies, at other addresses.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch

UNATTRIBUTED = "unattributed"
_BUILDER_HOOKS = ("create_masked_load", "create_masked_store", "create_atomic_rmw",
                  "create_atomic_cas", "set_grid_idx")


def interpreter_active() -> bool:
    """Whether this process runs the project's Triton kernels in the interpreter: the kernel
    modules were decorated under it, or (not imported yet) they will be."""
    common = sys.modules.get("stylegan_fast.ops.triton._common")
    if common is not None:
        return bool(common.INTERPRETED)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass
class Buffer:
    """One storage that kernels received, and the bytes moved in it."""
    name: str
    start: int
    nbytes: int
    storage: object  # the untyped storage: holds the memory (and its address) alive
    read: int = 0
    written: int = 0


@dataclass(frozen=True)
class TensorTraffic:
    """Bytes read and written in one named tensor (``nbytes``: its size; 0 if unknown)."""
    name: str
    nbytes: int
    read: int
    written: int

    @property
    def reads(self) -> float:
        """How many times the tensor was read (bytes read / its size)."""
        return self.read / self.nbytes if self.nbytes else 0.0


class TrafficMeter:
    """What :func:`metering` counted: buffers, launches, programs and unattributed bytes."""

    def __init__(self) -> None:
        self.buffers: dict[int, Buffer] = {}
        self.launches: list[str] = []  # kernel names, in launch order
        self.programs = 0
        self.unattributed_read = 0
        self.unattributed_written = 0
        self._starts = np.zeros(0, dtype=np.uint64)
        self._ends = np.zeros(0, dtype=np.uint64)
        self._order: list[Buffer] = []

    # ------------------------------------------------------------ what the hooks call
    def add_launch(self, kernel: str, named_args: dict) -> None:
        """Record a launch of ``kernel`` and the buffers of its tensor arguments."""
        self.launches.append(kernel)
        for param, value in named_args.items():
            for tensor in _tensors_in(value):
                self._add_buffer(param, tensor)

    def _add_buffer(self, param: str, tensor: torch.Tensor) -> None:
        if tensor.device.type != "cpu":
            raise ValueError(f"the traffic meter needs CPU tensors (the interpreter runs "
                             f"{tensor.device} tensors from host copies); {param} is on "
                             f"{tensor.device}")
        storage = tensor.untyped_storage()
        start, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or start in self.buffers:
            return
        name = param[:-len("_ptr")] if param.endswith("_ptr") else param
        self.buffers[start] = Buffer(name, start, nbytes, storage)
        self._order = sorted(self.buffers.values(), key=lambda b: b.start)
        self._starts = np.array([b.start for b in self._order], dtype=np.uint64)
        self._ends = np.array([b.start + b.nbytes for b in self._order], dtype=np.uint64)

    def count(self, ptrs, mask, *, read: bool, written: bool) -> None:
        """Count the active elements of an interpreter pointer handle ``ptrs`` (mask: a bool
        handle or None for all) as read and/or written."""
        addresses = np.asarray(ptrs.data).astype(np.uint64, copy=False)
        if mask is not None:
            active = np.broadcast_to(np.asarray(mask.data, dtype=bool), addresses.shape)
            addresses = addresses[active]
        addresses = addresses.reshape(-1)
        if addresses.size == 0:
            return
        element = max(1, ptrs.get_element_ty().primitive_bitwidth // 8)
        index = np.searchsorted(self._starts, addresses, side="right").astype(np.int64) - 1
        inside = index >= 0
        inside[inside] &= addresses[inside] < self._ends[index[inside]]
        per_buffer = np.bincount(index[inside], minlength=len(self._order))
        for buffer, elements in zip(self._order, per_buffer.tolist()):
            if elements:
                buffer.read += elements * element * read
                buffer.written += elements * element * written
        outside = int(addresses.size - inside.sum()) * element
        self.unattributed_read += outside * read
        self.unattributed_written += outside * written

    # ------------------------------------------------------------ results
    @property
    def bytes_read(self) -> int:
        return sum(b.read for b in self.buffers.values()) + self.unattributed_read

    @property
    def bytes_written(self) -> int:
        return sum(b.written for b in self.buffers.values()) + self.unattributed_written

    @property
    def total(self) -> int:
        return self.bytes_read + self.bytes_written

    def traffic(self, names: Optional[dict] = None) -> dict[str, TensorTraffic]:
        """Bytes per tensor name: ``names`` (name -> tensor, first name wins) name the buffers of
        those tensors' storages, the others keep their kernel parameter's name; buffers that end
        up with the same name are added up; ``unattributed`` is there when not zero."""
        by_storage = {}
        for name, tensor in (names or {}).items():
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().nbytes():
                by_storage.setdefault(tensor.untyped_storage().data_ptr(), name)
        result: dict[str, TensorTraffic] = {}
        for buffer in self._order:
            name = by_storage.get(buffer.start, buffer.name)
            old = result.get(name, TensorTraffic(name, 0, 0, 0))
            result[name] = TensorTraffic(name, old.nbytes + buffer.nbytes, old.read + buffer.read,
                                         old.written + buffer.written)
        if self.unattributed_read or self.unattributed_written:
            result[UNATTRIBUTED] = TensorTraffic(UNATTRIBUTED, 0, self.unattributed_read,
                                                 self.unattributed_written)
        return result


def _tensors_in(value) -> Iterator[torch.Tensor]:
    """The torch tensors in a kernel argument (a tensor, a Triton wrapper of one, a tensor
    descriptor, or a tuple of those)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(getattr(value, "base", None), torch.Tensor):  # TensorWrapper, descriptor
        yield value.base


_active: list[TrafficMeter] = []


@contextlib.contextmanager
def metering() -> Iterator[TrafficMeter]:
    """Count the traffic of every interpreted Triton program run inside the block.

    Raises RuntimeError when Triton's interpreter is not what runs the kernels of this process
    (see :func:`interpreter_active`), or when a meter is already active.
    """
    if not interpreter_active():
        raise RuntimeError("the traffic meter needs Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before stylegan_fast.ops.triton is imported")
    if _active:
        raise RuntimeError("a traffic meter is already active")
    from triton.runtime import interpreter

    meter = TrafficMeter()
    builder = interpreter.interpreter_builder
    own = vars(builder)
    saved = {name: own[name] for name in _BUILDER_HOOKS if name in own}
    original = {name: getattr(builder, name) for name in _BUILDER_HOOKS}
    executor_call = interpreter.GridExecutor.__call__

    def masked_load(ptrs, mask, *args, **kwargs):
        meter.count(ptrs, mask, read=True, written=False)
        return original["create_masked_load"](ptrs, mask, *args, **kwargs)

    def masked_store(ptrs, value, mask, *args, **kwargs):
        meter.count(ptrs, mask, read=False, written=True)
        return original["create_masked_store"](ptrs, value, mask, *args, **kwargs)

    def atomic_rmw(op, ptr, val, mask, *args, **kwargs):
        meter.count(ptr, mask, read=True, written=True)
        return original["create_atomic_rmw"](op, ptr, val, mask, *args, **kwargs)

    def atomic_cas(ptr, *args, **kwargs):
        meter.count(ptr, None, read=True, written=True)
        return original["create_atomic_cas"](ptr, *args, **kwargs)

    def set_grid_idx(*args, **kwargs):
        meter.programs += 1
        return original["set_grid_idx"](*args, **kwargs)

    def launch(executor, *args, **kwargs):
        named = dict(zip(executor.arg_names, args))
        named.update((k, v) for k, v in kwargs.items() if k in executor.arg_names)
        meter.add_launch(executor.fn.__name__, named)
        return executor_call(executor, *args, **kwargs)

    hooks = dict(zip(_BUILDER_HOOKS, (masked_load, masked_store, atomic_rmw, atomic_cas,
                                      set_grid_idx)))
    _active.append(meter)
    try:
        for name, hook in hooks.items():
            setattr(builder, name, hook)
        interpreter.GridExecutor.__call__ = launch
        yield meter
    finally:
        interpreter.GridExecutor.__call__ = executor_call
        for name in _BUILDER_HOOKS:
            if name in saved:
                setattr(builder, name, saved[name])
            else:
                vars(builder).pop(name, None)
        _active.pop()
