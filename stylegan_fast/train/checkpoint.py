"""Checkpoint files that lose nothing, never leave a half-written file under a real name, and say
so when one was damaged after it was written.

A checkpoint is ``torch.save`` of one dict (keys include ``G``, ``D``, ``G_ema`` state dicts,
the optimizers, gradient scalers, progress, per-rank RNG states and the config), written to a
temporary file in the same folder, flushed to disk, then renamed over its final name with
``os.replace`` (atomic on POSIX and Windows). A crash or kill during the write leaves at most a
stray temporary file, which :func:`prune` removes later; every ``checkpoint-*.pt`` is complete.

Integrity (format 2): the dict carries ``digest``, the SHA-256 of its contents (every tensor's
dtype, shape and bytes, every other value's type and ``repr``, in key order: :func:`digest`),
computed before the write, so it travels inside the file through the same atomic rename.
:func:`load` recomputes it: a file cut short (a full disk, a killed copy) or changed afterwards
raises :class:`CheckpointError` naming the file and what is wrong. Format 1 files (no digest)
still load. A run folder resolves to its newest checkpoint that loads, skipping the others with
one warning each.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import UserError
from ..files import TEMP_SUFFIX, replaced_atomically

NAME = re.compile(r"^checkpoint-(\d{9})\.pt$")
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: before the digest; loads unchecked
# What torch.load raises for a damaged or foreign file.
LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
               IndexError, TypeError, AttributeError, ImportError)
ZIP_MAGIC = b"PK\x03\x04"
TRUNCATED = ("is truncated or corrupt: not a complete zip archive (a full disk, a killed write "
             "or an interrupted copy leaves files like this)")
TRUNCATION_HINTS = ("central directory", "unexpected eof", "truncat", "file_size")


class CheckpointError(UserError):
    """A checkpoint that cannot be used: truncated, corrupt, not ours, or from a newer version."""


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
    (0: all). Older checkpoints are deleted only after the new one is complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = write_atomically(state, folder / checkpoint_name(nimg))
    prune(folder, keep)
    return final


def write_atomically(state: dict, path: Union[str, Path]) -> Path:
    """``torch.save`` of ``state`` plus the format version and its :func:`digest` to ``path``
    through a temporary file in the same folder, flushed to disk and renamed over ``path``
    (:func:`~stylegan_fast.files.replaced_atomically`): the file is complete or absent, also
    after a crash or a full disk."""
    path = Path(path)
    payload = {**state, "format_version": FORMAT_VERSION}
    payload["digest"] = digest(payload)
    with replaced_atomically(path) as temp:
        torch.save(payload, temp)
    return path


def digest(state: dict) -> str:
    """SHA-256 (hex) of ``state`` without its ``digest`` key: tensors by dtype, shape and bytes,
    containers in order, anything else by type and ``repr`` (exact for floats)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{data.dtype}{tuple(value.shape)}:".encode())
        h.update(data.view(torch.uint8).numpy().data if data.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}:".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}:".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (0: keep all) and the temporary files of
    checkpoints and sample grids whose writer was killed."""
    for pattern in (".checkpoint-*", ".samples-*"):
        for stray in folder.glob(f"{pattern}{TEMP_SUFFIX}.*"):
            stray.unlink(missing_ok=True)
    if keep > 0:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)


def resolve(path: Union[str, Path]) -> Path:
    """``path`` itself, or for a folder its newest checkpoint file (not opened: see
    :func:`open_checkpoint` for the newest one that loads)."""
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
    """The state of a checkpoint file, or of the newest valid one in a run folder
    (:func:`open_checkpoint`)."""
    return open_checkpoint(path, map_location)[1]


def open_checkpoint(path: Union[str, Path], map_location="cpu") -> tuple[Path, dict]:
    """(file, state) of a checkpoint file, or of a run folder's newest checkpoint that loads and
    passes its integrity check; each newer one that does not is skipped with a warning.

    Raises ``FileNotFoundError`` when there is no file / no checkpoint in the folder, and
    :class:`CheckpointError` when the file (or every checkpoint of the folder) is unusable."""
    path = Path(path)
    if not path.is_dir():
        return resolve(path), load_file(path, map_location)
    candidates = list_checkpoints(path)
    if not candidates:
        resolve(path)  # raises: nothing to load
    problems = []
    for candidate in reversed(candidates):
        try:
            return candidate, load_file(candidate, map_location)
        except CheckpointError as exc:
            problems.append(str(exc))
            warnings.warn(f"{exc}; skipping it for an older one", stacklevel=2)
    raise CheckpointError(f"no usable checkpoint in {str(path)!r}: all {len(candidates)} are "
                          f"damaged ({'; '.join(problems)})")


def load_file(path: Union[str, Path], map_location="cpu") -> dict:
    """Load one checkpoint file (tensors and plain values only: ``weights_only=True``) and verify
    its digest; :class:`CheckpointError` says what is wrong with it."""
    path = resolve(path)
    name = repr(str(path))
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise CheckpointError(f"checkpoint {name} is empty (0 bytes): a write that never "
                              f"happened, or a full disk")
    if magic != ZIP_MAGIC:
        raise CheckpointError(f"checkpoint {name} is not a checkpoint: not the zip archive "
                              f"torch.save writes")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {name} {TRUNCATED}")
    try:
        with warnings.catch_warnings():  # torch's remarks on foreign pickles: the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (PermissionError, IsADirectoryError):
        raise
    except LOAD_ERRORS as exc:  # zip, unpickling and storage errors of a damaged or foreign file
        raise CheckpointError(f"checkpoint {name} {_diagnose(exc)}") from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version not in READABLE_FORMATS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise CheckpointError(
            f"checkpoint {name} was written by a newer stylegan_fast (format {version}; this one "
            f"reads {', '.join(map(str, READABLE_FORMATS))})" if newer else
            f"checkpoint {name} is not a stylegan_fast checkpoint (no format_version "
            f"{'/'.join(map(str, READABLE_FORMATS))})")
    if version >= 2:
        stored = state.get("digest")
        if not isinstance(stored, str) or digest(state) != stored:
            raise CheckpointError(f"checkpoint {name} fails its integrity check (the SHA-256 of "
                                  f"its contents differs from the one stored when it was "
                                  f"written): it was damaged or changed after writing")
    return state


def _diagnose(exc: BaseException) -> str:
    """What a failed ``torch.load`` says about the file, in a few words."""
    text = " ".join(str(exc).split())
    if isinstance(exc, EOFError) or any(hint in text.lower() for hint in TRUNCATION_HINTS):
        return TRUNCATED
    if "weights only load failed" in text.lower() or "unsupported global" in text.lower():
        return ("is not a stylegan_fast checkpoint: it holds Python objects other than tensors "
                "and plain values")
    first = re.split(r"(?<=[.:]) ", text)[0][:160]
    return f"is corrupt or not a checkpoint ({type(exc).__name__}: {first})"
