"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM (a preempted instance, a cluster's
time limit) asks the run to finish the step in flight, write a checkpoint and exit with status
128 + the signal's number (130, 143). A second signal stops at once (``KeyboardInterrupt``, or
``SystemExit(143)`` for SIGTERM): what was written before stays intact, since checkpoints are
written atomically.

Under ``torchrun`` every rank gets the signal (torchrun starts its workers in sessions of their
own, so a terminal's Ctrl-C reaches torchrun, which forwards it to each worker once), or only
some do (a signal sent to one process); the ranks agree on stopping through
:class:`Agreement`, one small all-reduce per step read one step later (no rank waits for it), so
that all of them take the same last step and enter the checkpoint's collectives together.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Optional

import torch

from . import distributed

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While active (``with``), SIGINT and SIGTERM set :attr:`signum` instead of killing the
    process; the loop polls it between steps; a second signal stops at once. Only the main
    thread can install handlers: in another thread this does nothing (signals keep their usual
    effect)."""

    def __init__(self, announce: bool = True):
        self.signum: Optional[int] = None
        self.announce = announce
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second one: stop now
            self.__exit__()
            if signum == signal.SIGTERM:
                raise SystemExit(128 + signum)
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            print(f"\nstylegan-fast train: {signal.Signals(signum).name} received: finishing "
                  f"this step and writing a checkpoint (press Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)


class Agreement:
    """What the ranks agree on after each step: the signal any rank received, and whether rank 0
    asks for a (time-based) snapshot.

    Alone, :meth:`__call__` returns its own arguments. Under ``torchrun`` each call starts an
    all-reduce of this step's flags and returns the result of the previous call's, copied to
    the host while this step ran: every rank sees the same flags at the same step, one step
    after they were raised, and none waits for the device in between (on a GPU the copy goes to
    pinned memory, and only the event of the step before is awaited). :meth:`close` awaits
    the last all-reduce; use it as a context manager.
    """

    def __init__(self, world: distributed.World):
        self.world = world
        self._pending: Optional[tuple] = None  # (work, host flags, copied event or None)

    def __enter__(self) -> Agreement:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, stop_signal: Optional[int],
                 snapshot_due: bool) -> tuple[Optional[int], bool]:
        if self.world.size == 1:
            return stop_signal, snapshot_due
        previous = self._collect()
        self._pending = self._start([float(stop_signal or 0),
                                     float(snapshot_due and self.world.is_main)])
        if previous is None:
            return None, False
        return (int(previous[0]) or None), bool(previous[1])

    def _start(self, values: list[float]) -> tuple:
        """Start the all-reduce of ``values``: (its work or None, the tensor that will hold the
        result on the host, the CUDA event of its copy there or None)."""
        if self.world.device.type != "cuda":  # gloo reduces host tensors
            flags = torch.tensor(values)
            return distributed.start_max_over_ranks(flags), flags, None
        # nccl: to the GPU and back through pinned memory, so that the host never waits
        flags = torch.tensor(values, pin_memory=True).to(self.world.device, non_blocking=True)
        distributed.start_max_over_ranks(flags).wait()  # the stream waits, not the host
        host = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
        host.copy_(flags, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        return None, host, copied

    def _collect(self) -> Optional[list]:
        """The flags of the previous call, on the host (None before the first)."""
        if self._pending is None:
            return None
        work, host, copied = self._pending
        self._pending = None
        if copied is not None:
            copied.synchronize()
        else:
            work.wait()
        return host.tolist()

    def close(self) -> None:
        """Await the last all-reduce (every rank has started it)."""
        self._collect()
