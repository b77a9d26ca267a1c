"""The training loop reads no value from the device on a step that writes no log record: losses,
R1 and the non-finite-step check stay on the device until progress is printed or logged.

On the CPU every tensor lives on the host, so the test counts the calls that *would* read a
device value (``.item()``, ``.tolist()``, ``bool(t)``, ``torch.equal``, boolean-mask indexing
...); on a GPU, :func:`torch.cuda.set_sync_debug_mode` checks that nothing synchronizes.
"""
from __future__ import annotations

import json
import threading
import warnings
from contextlib import contextmanager

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stylegan_fast.train import loop, monitor, train

from .helpers import tiny_config

# Tensor methods that copy values to the host (Python-visible ones).
READ_METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__",
                "__index__", "__complex__", "__array__", "__format__", "__repr__", "__contains__")
# aten ops that return host values or need them to size their output (reads C++ code makes).
READ_OPS = ("_local_scalar_dense", "equal", "is_nonzero", "nonzero", "nonzero_static",
            "masked_select", "_unique2", "unique_consecutive", "unique_dim", "allclose")
# aten ops that read their indices when one is a boolean mask (x[mask], x[mask] = v).
MASK_INDEXING_OPS = ("index", "index_put", "index_put_", "_index_put_impl_")
MAX_READS_PER_LOG_RECORD = 4


class HostReads(TorchDispatchMode):
    """Counts host reads of tensor values made in this thread while active: the methods of
    ``READ_METHODS`` (patched on ``torch.Tensor``) and the aten ops of ``READ_OPS`` called
    from outside them. ``where[i]`` lists the method or op of each read."""

    def __init__(self):
        super().__init__()
        self.where: list[str] = []
        self._local = threading.local()
        self._originals = {}

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextmanager
    def _inside(self, name: str):
        if self._depth() == 0:
            self.where.append(name)
        self._local.depth = self._depth() + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    @contextmanager
    def paused(self):
        """Reads made inside are not counted (e.g. the data loader's CPU index tensors)."""
        self._local.depth = self._depth() + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    def _counted(self, name: str, method):
        def counted(tensor, *args, **kwargs):
            with self._inside(name):
                return method(tensor, *args, **kwargs)
        return counted

    def __enter__(self):
        for name in READ_METHODS:
            self._originals[name] = torch.Tensor.__dict__.get(name)  # None: inherited from C
            setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, own in self._originals.items():
            if own is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, own)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if self._depth() == 0 and (name in READ_OPS or name in MASK_INDEXING_OPS
                                   and _has_mask(args[1])):
            self.where.append(f"aten.{name}")
        return func(*args, **(kwargs or {}))


def _has_mask(indices) -> bool:
    """Whether boolean masks are among ``indices`` (their output's size is their count)."""
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in indices)


def test_the_counter_sees_each_kind_of_read():
    t, mask = torch.arange(4.0), torch.tensor([True, False, True, False])
    with HostReads() as counter:
        t.sum().item(), t.tolist(), bool(t.sum()), float(t[0]), int(t[1]), f"{t[0]:.1f}"
        torch.equal(t, t), t[mask], t.nonzero(), t.numpy(), t.cpu(), 2.0 in t
        t * 2 + 1, t[torch.tensor([0, 2])]  # no read
    assert counter.where == ["item", "tolist", "__bool__", "__float__", "__int__", "__format__",
                             "aten.equal", "aten.index", "aten.nonzero", "numpy", "cpu",
                             "__contains__"]
    assert "item" not in torch.Tensor.__dict__ and float(t[1]) == 1.0  # restored


def reads_per_step(monkeypatch, config) -> tuple[list[list[str]], list[int]]:
    """(the host reads of each step, counted from the start of one ``train_step`` to the start
    of the next: the loop's logging, progress and stop checks included; the steps that wrote a
    log record (1-based))."""
    counter, starts = HostReads(), []
    step, batches = loop.Trainer.train_step, loop.batches

    def counted_step(self, phase):
        starts.append(len(counter.where))
        step(self, phase)

    def uncounted_batches(*args, **kwargs):  # host data: CPU index tensors, seeds
        with counter.paused():
            loader = batches(*args, **kwargs)
        while True:
            with counter.paused():
                batch = next(loader)
            yield batch

    monkeypatch.setattr(loop.Trainer, "train_step", counted_step)
    monkeypatch.setattr(loop, "batches", uncounted_batches)
    with counter:
        summary = train(config)
    ends = starts[1:] + [len(counter.where)]
    with open(f"{config.out}/log.jsonl", encoding="utf-8") as log:
        records = [json.loads(line) for line in log]
    logged = [r["step"] for r in records if "loss_G" in r]
    assert summary["steps"] == len(starts)
    return [counter.where[a:b] for a, b in zip(starts, ends)], logged


@pytest.mark.parametrize("options", [
    dict(amp="off", batch_gpu=2, r1_interval=2),  # accumulation, lazy R1, growing 8 -> 16 px
    dict(amp="fp16"),  # its first steps are skipped: the loss scale backs off
], ids=["float32", "fp16"])
def test_steps_without_a_log_record_read_nothing_from_the_device(tmp_path, monkeypatch,
                                                                  options):
    """8 steps, a log record every 4th. The eager backend: the ref backend's noise reads its
    seed, a CPU tensor drawn on the host (no device value), which would count here."""
    monkeypatch.setattr(monitor, "PROGRESS_REFRESH_S", float("inf"))
    config = tiny_config(tmp_path, kimg=0.032, log_kimg=0.016, progress=True, backend="eager",
                         **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fp16's skipped steps
        reads, logged = reads_per_step(monkeypatch, config)
    assert logged == [4, 8]
    quiet = {step: reads[step - 1] for step in range(1, len(reads) + 1) if step not in logged}
    assert all(not r for r in quiet.values()), quiet
    assert 1 <= len(reads[logged[0] - 1]) <= MAX_READS_PER_LOG_RECORD, reads[logged[0] - 1]


def test_the_progress_bar_reads_its_losses_about_once_a_second(tmp_path, monkeypatch):
    """Due after every step here: one read per step, the bar shows the means since the last
    log record."""
    monkeypatch.setattr(monitor, "PROGRESS_REFRESH_S", 0.0)
    shown = []
    advance = monitor.Monitor.advance

    def recording_advance(self, kimg, stats, read=None):
        shown.append(read)
        advance(self, kimg, stats, read)

    monkeypatch.setattr(monitor.Monitor, "advance", recording_advance)
    config = tiny_config(tmp_path, kimg=0.016, log_kimg=0.016, progress=True, backend="eager")
    reads, logged = reads_per_step(monkeypatch, config)
    assert logged == [4]
    assert [len(r) for r in reads[:3]] == [1, 1, 1]
    assert all(set(read) == {"G", "D"} for read in shown)


@contextmanager
def sync_debug_mode(mode: str):
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_steps_do_not_synchronize(tmp_path, monkeypatch):
    """On a GPU (the backend and AMP a user would choose), every synchronizing call is an error
    inside each step and the progress bar's update after it, from the second step on (the
    first may tune kernels); log records and the checkpoint may synchronize."""
    monkeypatch.setattr(monitor, "PROGRESS_REFRESH_S", float("inf"))
    for name in ("train_step", "_show_progress"):
        method = getattr(loop.Trainer, name)

        def strict(self, *args, __method=method):
            with sync_debug_mode("error" if self.step > 1 else "default"):
                return __method(self, *args)

        monkeypatch.setattr(loop.Trainer, name, strict)
    config = tiny_config(tmp_path, device="cuda", backend="auto", amp="bf16", kimg=0.032,
                         log_kimg=0.016, progressive=False, progress=True)
    summary = train(config)
    assert summary["steps"] == 8 and summary["skipped_steps"] == 0
