"""Checkpoint files that lose nothing and never leave a half-written file under a real name.

A checkpoint is ``torch.save`` of one dict (keys include ``G``, ``D``, ``G_ema`` state dicts,
the optimizers, gradient scalers, progress, per-rank RNG states and the config), written to a
temporary file in the same folder, flushed to disk, then renamed over its final name with
``os.replace`` (atomic on POSIX and Windows). A crash or kill during the write leaves at most a
stray temporary file, which :func:`prune` removes later; every ``checkpoint-*.pt`` is complete.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

import torch

NAME = re.compile(r"^checkpoint-(\d{9})\.pt$")
TEMP_SUFFIX = ".tmp"
FORMAT_VERSION = 1


def checkpoint_name(nimg: int) -> str:
    return f"checkpoint-{nimg:09d}.pt"


def list_checkpoints(folder: Union[str, Path]) -> list[Path]:
    """The run's checkpoints, oldest (fewest images) first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if NAME.match(p.name)),
                  key=lambda p: int(NAME.match(p.name).group(1)))


def latest_checkpoint(folder: Union[str, Path]) -> Optional[Path]:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save(state: dict, folder: Union[str, Path], nimg: int, keep: int) -> Path:
    """Write ``state`` atomically as ``folder/checkpoint-<nimg>.pt`` and keep the newest ``keep``
    (0: all)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = write_atomically(state, folder / checkpoint_name(nimg))
    prune(folder, keep)
    return final


def write_atomically(state: dict, path: Union[str, Path]) -> Path:
    """``torch.save`` of ``state`` (plus the format version) to ``path`` through a temporary file
    in the same folder (``.<name>.<pid>.tmp``), flushed to disk and renamed over ``path``: the
    file is complete or absent, also after a crash or a full disk."""
    path = Path(path)
    temp = path.parent / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        with open(temp, "wb") as f:
            torch.save({**state, "format_version": FORMAT_VERSION}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (0: keep all) and stray temporary files."""
    for stray in folder.glob(f".checkpoint-*{TEMP_SUFFIX}"):
        stray.unlink(missing_ok=True)
    if keep > 0:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)


def resolve(path: Union[str, Path]) -> Path:
    """``path`` itself, or for a folder the newest checkpoint in it."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint-*.pt in {str(path)!r} to resume from")
        return latest
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return path


def load(path: Union[str, Path], map_location="cpu") -> dict:
    """Load a checkpoint (tensors and plain values only: ``weights_only=True``)."""
    state = torch.load(resolve(path), map_location=map_location, weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a stylegan_fast checkpoint of format {FORMAT_VERSION}")
    return state
