"""What a person watches during training: a progress bar, a JSONL log, optional TensorBoard."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..errors import UserError


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
        self.tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise UserError("--tensorboard needs the tensorboard package "
                                   "(pip install tensorboard)") from exc
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))

    def advance(self, kimg: float, stats: dict) -> None:
        """Move the bar to ``kimg`` and show ``stats`` beside it."""
        if self.bar is not None:
            self.bar.update(round(min(kimg, self.bar.total) - self.bar.n, 3))
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in stats.items()),
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
