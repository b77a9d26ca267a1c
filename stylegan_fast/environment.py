"""Facts about the toolchain and device, for ``stylegan-fast doctor`` and the extension builder."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import torch

CACHE_ENV_VAR = "STYLEGAN_FAST_CACHE"
STALE_LOCK_SECONDS = 600


def extension_cache_dir() -> Path:
    """Where compiled extensions are cached (``$STYLEGAN_FAST_CACHE`` or the user cache)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylegan_fast" / "extensions"


def stale_locks(cache_dir: Optional[Path] = None) -> list[Path]:
    """Lock files in the cache older than ``STALE_LOCK_SECONDS`` (left by a killed build)."""
    cache_dir = cache_dir or extension_cache_dir()
    if not cache_dir.is_dir():
        return []
    now = time.time()
    return sorted(p for p in cache_dir.rglob("*.lock")
                  if now - p.stat().st_mtime > STALE_LOCK_SECONDS)


def _version_line(cmd: list[str], contains: str = "") -> Optional[str]:
    """The first line of ``cmd``'s output that contains ``contains`` (None if it can't run)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return next((line for line in lines if contains in line), None)


def find_nvcc() -> Optional[str]:
    """nvcc from $CUDA_HOME/$CUDA_PATH, PATH, or /usr/local/cuda."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and Path(root, "bin", "nvcc").is_file():
            return str(Path(root, "bin", "nvcc"))
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def tool_versions() -> dict[str, Optional[str]]:
    """Paths and versions of nvcc, ninja and the host C++ compiler (None when missing)."""
    nvcc = find_nvcc()
    ninja = shutil.which("ninja")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    return {
        "nvcc": f"{nvcc} ({_version_line([nvcc, '--version'], 'release')})" if nvcc else None,
        "ninja": f"{ninja} ({_version_line([ninja, '--version'])})" if ninja else None,
        "c++": f"{cxx} ({_version_line([cxx, '--version'])})" if cxx else None,
    }


def triton_version() -> Optional[str]:
    try:
        import triton
    except Exception:
        return None
    return getattr(triton, "__version__", "unknown")


def gpu_description() -> Optional[str]:
    """'<name>, sm_XY, <GiB> GiB' for the current GPU, or None."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return f"{props.name}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB"


def versions() -> dict[str, Optional[str]]:
    """The versions every result record and report carries."""
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
