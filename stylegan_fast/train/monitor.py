"""What a person watches during training: a progress bar, a JSONL log, optional TensorBoard, and
the tally of per-step statistics they show, kept on the device until they are shown."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from ..errors import UserError

PROGRESS_REFRESH_S = 1.0  # how often the progress bar's statistics are read and shown


class Tally:
    """Sums of per-step scalars that live on the device (losses, R1, skipped-step flags).

    :meth:`add` reads nothing: it adds on the device. :meth:`read` copies the sums added since
    the previous read to the host in one transfer and adds them to :attr:`sums` (and the number
    of values to :attr:`counts`), which hold everything read since the last :meth:`restart`.
    """

    def __init__(self):
        self._unread: dict[str, torch.Tensor] = {}
        self._unread_counts: dict[str, int] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        """Add the scalar ``value`` to the sum called ``name`` (on the device)."""
        value = value.detach().reshape(()).float()
        if name in self._unread:
            self._unread[name] += value
        else:
            self._unread[name] = value.clone()
        self._unread_counts[name] = self._unread_counts.get(name, 0) + 1

    def read(self) -> dict[str, float]:
        """The sums added since the previous read, by name (one device -> host copy; none when
        nothing was added), also added to :attr:`sums`."""
        if not self._unread:
            return {}
        names = list(self._unread)
        new = dict(zip(names, torch.stack([self._unread[name] for name in names]).tolist()))
        for name, value in new.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + self._unread_counts[name]
        self._unread.clear()
        self._unread_counts.clear()
        return new

    def means(self, names: tuple[str, ...]) -> dict[str, float]:
        """The mean of each of ``names`` read since the last restart (the names with values)."""
        return {name: self.sums[name] / self.counts[name] for name in names if name in self.sums}

    def restart(self) -> None:
        """Forget what was read (values not read yet stay)."""
        self.sums.clear()
        self.counts.clear()


class JsonlLog:
    """Appends one JSON object per line to ``path`` (flushed after each, so ``tail -f`` works
    and a crash loses nothing written)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Monitor:
    """Progress bar over the run's kimg (with losses, images/s and the ETA), the JSONL log and,
    if asked for, TensorBoard scalars. Only the main rank makes one."""

    def __init__(self, out: Path, total_kimg: float, start_kimg: float, progress: bool,
                 tensorboard: bool):
        self.log = JsonlLog(out / "log.jsonl")
        self.bar: Optional[tqdm] = None
        if progress:
            self.bar = tqdm(total=round(total_kimg, 3), initial=round(start_kimg, 3),
                            unit="kimg", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg "
                                       "[{elapsed}<{remaining}{postfix}]")
        self.read_stats: dict = {}  # shown beside the bar until the next read
        self.last_shown = time.monotonic()
        self.tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise UserError("--tensorboard needs the tensorboard package "
                                   "(pip install tensorboard)") from exc
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))

    def stats_due(self) -> bool:
        """Whether the bar shows statistics and their last refresh is ``PROGRESS_REFRESH_S`` old
        (they are read from the device, so not on every step)."""
        return (self.bar is not None
                and time.monotonic() - self.last_shown >= PROGRESS_REFRESH_S)

    def advance(self, kimg: float, stats: dict, read: Optional[dict] = None) -> None:
        """Move the bar to ``kimg`` and show ``stats`` beside it, followed by the statistics
        read from the device most recently: ``read`` when they were read now (which restarts
        the clock of :meth:`stats_due`)."""
        if read is not None:
            self.read_stats, self.last_shown = read, time.monotonic()
        if self.bar is not None:
            self.bar.update(round(min(kimg, self.bar.total) - self.bar.n, 3))
            shown = {**stats, **self.read_stats}
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in shown.items()),
                                     refresh=False)

    def record(self, record: dict) -> None:
        """One JSONL line; its numbers also go to TensorBoard at step = images seen."""
        self.log.write(record)
        if self.tensorboard is not None and "nimg" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "nimg":
                    self.tensorboard.add_scalar(key, value, record["nimg"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.log.close()
