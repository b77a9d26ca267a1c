"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM (a preempted instance, a cluster's
time limit) asks the run to finish the step in flight, write a checkpoint and exit with status
128 + the signal's number (130, 143). A second signal stops at once (``KeyboardInterrupt``, or
``SystemExit(143)`` for SIGTERM): what was written before stays intact, since checkpoints are
written atomically.

Under ``torchrun`` every rank gets the signal (torchrun starts its workers in sessions of their
own, so a terminal's Ctrl-C reaches torchrun, which forwards it to each worker once), or only
some do (a signal sent to one process); the ranks agree on stopping through :func:`agree`, one
small all-reduce per step, so that all of them take the same last step and enter the
checkpoint's collectives together.
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


def agree(world: distributed.World, stop_signal: Optional[int],
          snapshot_due: bool) -> tuple[Optional[int], bool]:
    """(the signal any rank received, whether rank 0 asks for a snapshot), the same on every
    rank; alone, the arguments themselves."""
    if world.size == 1:
        return stop_signal, snapshot_due
    flags = torch.tensor([float(stop_signal or 0), float(snapshot_due and world.is_main)],
                         device=world.device)
    flags = distributed.max_over_ranks(flags).tolist()
    return (int(flags[0]) or None), bool(flags[1])
