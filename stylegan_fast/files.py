"""Writing files so that a crash, a kill or a full disk never leaves a half-written file under
its real name: write a temporary file in the same folder, flush it to disk, rename it over the
real name (``os.replace`` is atomic on POSIX and Windows)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

TEMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.tmp<suffix>`` beside ``path``: hidden, unique per writing process, and
    with ``path``'s suffix, for writers that choose the format by it (Pillow, imageio)."""
    return path.parent / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}{path.suffix}"


@contextmanager
def replaced_atomically(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path to write; when the block succeeds, flush that file to disk and
    rename it over ``path``. On any error the temporary file is removed and ``path`` is left
    as it was (absent, or its previous complete content)."""
    path = Path(path)
    temp = temporary_name(path)
    try:
        yield temp
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
