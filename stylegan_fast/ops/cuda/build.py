"""Build, cache and load the CUDA extension (``csrc/``); the ``cuda`` backend's probe.

The extension is found, in order:

1. ahead of time: ``stylegan_fast.ops.cuda._C``, built by ``setup.py`` when
   ``STYLEGAN_FAST_BUILD_CUDA=1`` (``pip install --no-build-isolation -e .``);
2. in the JIT cache: ``extension_cache_dir()/<key>/_stylegan_fast_cuda.so``, the key being
   ``<source hash>-torch<version>-cu<version>-sm<arch>``;
3. JIT-compiled into that cache, but only when asked: :func:`build` (``stylegan-fast build-ext``)
   or :func:`load` with ``build=True`` (what the probe does when the ``cuda`` backend is requested
   explicitly). ``auto`` never starts a compile.

A build compiles in a fresh temporary folder of the cache in a child process (its output, with
``-Xptxas -v``, goes to ``build.log``) and is renamed into place when complete, so that concurrent
processes (DDP ranks) never load a half-written module. While it runs it holds ``<key>.lock``
(pid, host, start time; the mtime is refreshed every few seconds): other processes wait for it,
and take over a lock whose holder died or stopped refreshing it. A failed build raises
:class:`BuildError` with one message (what is missing and how to fix it, or the compiler log's
path); :func:`load` remembers the failure for the rest of the process.

Nothing here runs when ``stylegan_fast`` is imported: the registry calls :func:`probe` the first
time an op meets a CUDA tensor (or when ``available_backends`` is asked).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ... import environment
from .build_config import CUDA_FLAGS, CXX_FLAGS, HEADERS, SOURCES, compile_flags

JIT_NAME = "_stylegan_fast_cuda"
AOT_MODULE = "stylegan_fast.ops.cuda._C"
LOCK_REFRESH_SECONDS = 5.0
BUILD_TIMEOUT_SECONDS = 3600

NOT_BUILT = ("the extension is not built yet; build it with `stylegan-fast build-ext`, or select "
             "the backend explicitly (use_backend('cuda') or STYLEGAN_FAST_BACKEND=cuda) to "
             "JIT-compile it on first use (a few minutes, once)")


class BuildError(RuntimeError):
    """The extension could not be built or loaded; the message says why and what to do."""


class NotBuilt(RuntimeError):
    """The extension exists nowhere yet and building was not requested."""


@dataclass
class BuildResult:
    path: Path                     # the loadable .so
    log: Optional[Path]            # build.log with the compiler output (None: found AOT)
    seconds: float                 # compile time (0 when it came from the cache)
    cached: bool                   # found ready, nothing compiled
    kernels: list = field(default_factory=list)  # [KernelInfo] from the ptxas output


@dataclass
class KernelInfo:
    name: str
    arch: str
    registers: int
    smem: int                      # static shared memory, bytes
    stack: int                     # stack frame, bytes
    spill_stores: int
    spill_loads: int
    mangled: str = ""              # the name as ptxas (and cuobjdump) print it


_STATE: dict = {"module": None, "error": None}
_STATE_LOCK = threading.Lock()


# ---------------------------------------------------------------------------- sources and keys
def source_dir() -> Path:
    """``csrc/`` of this checkout (the JIT build needs the sources; wheels carry the AOT .so)."""
    return Path(__file__).resolve().parents[3] / "csrc"


def source_hash() -> str:
    """Hash of every source and header and of the compile flags."""
    digest = hashlib.sha256()
    root = source_dir()
    for name in SOURCES + HEADERS:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    digest.update(repr((CUDA_FLAGS, CXX_FLAGS)).encode())
    return digest.hexdigest()[:16]


def normalize_arch(arch: str) -> str:
    """'9.0', '90', 'sm_90' -> '9.0'; lists ('8.0;9.0+PTX', '8.0 9.0') keep their entries."""
    entries = []
    for entry in re.split(r"[;, ]+", arch.strip()):
        if not entry:
            continue
        ptx = entry.endswith("+PTX")
        core = entry[:-4] if ptx else entry
        core = core.lower().removeprefix("sm_").removeprefix("compute_")
        if re.fullmatch(r"\d+\.\d+a?", core):
            pass
        elif re.fullmatch(r"\d{2,3}a?", core):
            suffix = "a" if core.endswith("a") else ""
            digits = core.rstrip("a")
            core = f"{digits[:-1]}.{digits[-1]}{suffix}"
        else:
            raise ValueError(f"bad CUDA arch {entry!r}: use e.g. 9.0, 8.6, 9.0+PTX")
        entries.append(core + ("+PTX" if ptx else ""))
    if not entries:
        raise ValueError("empty CUDA arch list")
    return ";".join(entries)


def _sm(arch: str) -> str:
    """'9.0' -> 'sm_90' (for messages)."""
    return ";".join("sm_" + a.replace(".", "") for a in arch.split(";"))


def device_arch(device: Optional[int] = None) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}.{minor}"


def default_arch() -> str:
    """The current GPU's arch, else $TORCH_CUDA_ARCH_LIST, else 9.0 (H100)."""
    if torch.cuda.is_available():
        return device_arch()
    return normalize_arch(os.environ.get("TORCH_CUDA_ARCH_LIST") or "9.0")


def cache_key(arch: str) -> str:
    tag = normalize_arch(arch).replace(";", "_").replace(".", "").replace("+", "")
    torch_version = re.sub(r"[^0-9A-Za-z.]+", "_", torch.__version__)
    return f"{source_hash()}-torch{torch_version}-cu{torch.version.cuda}-sm{tag}"


def cache_root() -> Path:
    return environment.extension_cache_dir()


def cached_build(arch: str) -> Optional[Path]:
    """The cached .so for ``arch`` (this source, torch and CUDA), or None."""
    path = cache_root() / cache_key(arch) / f"{JIT_NAME}.so"
    return path if path.is_file() else None


# ---------------------------------------------------------------------------- toolchain
def _nvcc_release(nvcc: str) -> Optional[str]:
    line = environment._version_line([nvcc, "--version"], "release")
    match = re.search(r"release (\d+)\.(\d+)", line or "")
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _toolkit_root(nvcc: str) -> Path:
    """The toolkit folder behind ``nvcc`` (which may be a wrapper script, as /usr/local/bin/nvcc
    is here): nvcc's own TOP, from a dry run."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
        match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
        if match:
            return Path(match.group(1).strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        pass
    return Path(nvcc).resolve().parent.parent


@dataclass
class Toolchain:
    nvcc: str
    cuda_home: Path
    nvcc_version: str
    ninja: str


def find_toolchain() -> Toolchain:
    """nvcc (matching torch's CUDA major version) and ninja, or BuildError saying what is wrong."""
    if torch.version.cuda is None:
        raise BuildError("torch is a CPU-only build: install a CUDA build of torch to use the "
                         "cuda backend")
    nvcc = None
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:
            candidate = Path(root, "bin", "nvcc")
            if not candidate.is_file():
                raise BuildError(f"nvcc not found: {var}={root} has no bin/nvcc. Point {var} at "
                                 f"a CUDA {torch.version.cuda} toolkit (or unset it to use nvcc "
                                 f"from PATH)")
            nvcc = str(candidate)
            break
    nvcc = nvcc or environment.find_nvcc()
    if nvcc is None:
        raise BuildError(f"nvcc not found (not in $CUDA_HOME, PATH or /usr/local/cuda): install "
                         f"the CUDA {torch.version.cuda} toolkit and put its bin/ on PATH or set "
                         f"CUDA_HOME")
    release = _nvcc_release(nvcc)
    if release is None:
        raise BuildError(f"could not run {nvcc} --version")
    if release.split(".")[0] != torch.version.cuda.split(".")[0]:
        raise BuildError(f"CUDA version mismatch: {nvcc} is CUDA {release} but torch was built "
                         f"with CUDA {torch.version.cuda}; the major versions must match. Install "
                         f"CUDA {torch.version.cuda.split('.')[0]}.x (or a torch built for CUDA "
                         f"{release}) and point CUDA_HOME at it")
    ninja = shutil.which("ninja")
    if ninja is None:
        raise BuildError("ninja not found on PATH: `pip install ninja` (torch's extension "
                         "builder needs it)")
    return Toolchain(nvcc, _toolkit_root(nvcc), release, ninja)


# ---------------------------------------------------------------------------- build
def _lock_owner_alive(lock: Path) -> bool:
    """Whether the process named in ``lock`` still holds it: alive (same host) and refreshing."""
    try:
        text = lock.read_text()
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return False
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if age > environment.STALE_LOCK_SECONDS:
        return False
    if fields.get("host") == socket.gethostname():
        try:
            os.kill(int(fields.get("pid", "0")), 0)
        except (ValueError, ProcessLookupError):
            return False
        except PermissionError:
            return True
    return True


def _acquire_lock(lock: Path, ready: Path, timeout: float) -> bool:
    """Take ``lock`` (True), or return False once ``ready`` exists (another process built it).
    A lock whose owner died or stopped refreshing it is removed and taken over."""
    deadline = time.time() + timeout
    while True:
        if ready.is_file():
            return False
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _lock_owner_alive(lock):
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            if time.time() > deadline:
                raise BuildError(f"timed out waiting for another build holding {lock}; delete "
                                 f"it if no build is running")
            time.sleep(1.0)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"pid={os.getpid()} host={socket.gethostname()} start={time.time():.0f}\n")
        return True


def _worker_command(arch: str, out_dir: Path, verbose: bool) -> list[str]:
    return [sys.executable, "-m", "stylegan_fast.ops.cuda.build", "--worker",
            "--arch", arch, "--out", str(out_dir)] + (["--verbose"] if verbose else [])


def _run_worker(arch: str, out_dir: Path, log: Path, toolchain: Toolchain, lock: Optional[Path],
                verbose: bool) -> int:
    env = dict(os.environ)
    env["CUDA_HOME"] = str(toolchain.cuda_home)
    env["TORCH_CUDA_ARCH_LIST"] = arch
    env["PATH"] = os.pathsep.join([str(Path(toolchain.nvcc).parent),
                                   str(Path(toolchain.ninja).parent), env.get("PATH", "")])
    env.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, len(SOURCES)))))
    with open(log, "w") as sink:
        proc = subprocess.Popen(_worker_command(arch, out_dir, verbose), stdout=sink,
                                stderr=subprocess.STDOUT, env=env, cwd=str(out_dir))
        start = time.time()
        while True:
            try:
                return proc.wait(timeout=LOCK_REFRESH_SECONDS)
            except subprocess.TimeoutExpired:
                if lock is not None:
                    try:
                        os.utime(lock)
                    except OSError:
                        pass
                if time.time() - start > BUILD_TIMEOUT_SECONDS:
                    proc.kill()
                    proc.wait()
                    return -9


def _error_excerpt(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in text if re.search(r"error|Error|fatal", line)]
    return "\n".join((errors or text)[-lines:])


def build(arch: Optional[str] = None, *, force: bool = False, verbose: bool = False,
          wait_seconds: float = BUILD_TIMEOUT_SECONDS) -> BuildResult:
    """Compile the extension for ``arch`` (default :func:`default_arch`) into the cache, unless it
    is there already (``force`` rebuilds). Works without a GPU. Raises :class:`BuildError`."""
    arch = normalize_arch(arch or default_arch())
    root = cache_root()
    key = cache_key(arch)
    final = root / key
    so_name = f"{JIT_NAME}.so"
    if not force and (final / so_name).is_file():
        return _result(final / so_name, 0.0, cached=True)
    toolchain = find_toolchain()
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f"{key}.lock"
    if not force and not _acquire_lock(lock, final / so_name, wait_seconds):
        return _result(final / so_name, 0.0, cached=True)
    if force:
        _acquire_lock(lock, root / f"{key}.never", wait_seconds)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
        log = tmp / "build.log"
        start = time.time()
        code = _run_worker(arch, tmp, log, toolchain, lock, verbose)
        seconds = time.time() - start
        if code != 0 or not (tmp / so_name).is_file():
            failed = root / f"{key}.failed.log"
            shutil.copyfile(log, failed)
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"compiling the CUDA extension for {_sm(arch)} failed (exit "
                             f"{code}); full log: {failed}\n{_error_excerpt(failed)}")
        for leftover in [tmp / "lock", *tmp.glob("*.o")]:  # torch's build baton, objects
            leftover.unlink(missing_ok=True)
        if final.exists():  # force, or a leftover: move the old one out of the way first
            trash = Path(tempfile.mkdtemp(prefix=f"{key}.old-", dir=root))
            os.replace(final, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)  # atomic: other processes see nothing or the complete folder
        return _result(final / so_name, seconds, cached=False)
    finally:
        try:
            lock.unlink()
        except FileNotFoundError:
            pass


def _result(path: Path, seconds: float, cached: bool) -> BuildResult:
    log = path.parent / "build.log"
    log = log if log.is_file() else None
    return BuildResult(path, log, seconds, cached, parse_ptxas(log.read_text()) if log else [])


def parse_ptxas(text: str) -> list[KernelInfo]:
    """Registers, shared memory, stack and spills per kernel from ``-Xptxas -v`` output."""
    kernels: list[KernelInfo] = []
    current: Optional[KernelInfo] = None
    for line in text.splitlines():
        match = re.search(r"Compiling entry function '([^']+)' for '(\w+)'", line)
        if match:
            current = KernelInfo(match.group(1), match.group(2), 0, 0, 0, 0, 0)
            kernels.append(current)
            continue
        if current is None:
            continue
        match = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill "
                          r"loads", line)
        if match:
            current.stack, current.spill_stores, current.spill_loads = map(int, match.groups())
        match = re.search(r"Used (\d+) registers", line)
        if match:
            current.registers = int(match.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            current.smem = int(smem.group(1)) if smem else 0
    names = demangle([k.name for k in kernels])
    for kernel, name in zip(kernels, names):
        kernel.mangled, kernel.name = kernel.name, name
    return kernels


def demangle(names: list[str]) -> list[str]:
    """Readable kernel names: demangled (c++filt), namespaces and arguments dropped."""
    filt = shutil.which("c++filt")
    if filt and names:
        try:
            out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()
            if len(out) == len(names):
                names = out
        except (OSError, subprocess.SubprocessError):
            pass
    short = []
    for name in names:
        name = name.replace("(anonymous namespace)::", "").replace("sgf::", "")
        name = re.sub(r"^void ", "", name)
        depth, cut = 0, len(name)
        for i, ch in enumerate(name):  # drop the argument list: the first '(' at depth 0
            if ch == "<":
                depth += 1
            elif ch == ">":
                depth -= 1
            elif ch == "(" and depth == 0:
                cut = i
                break
        short.append(name[:cut].replace("__nv_bfloat16", "bf16").replace("__half", "half"))
    return short


# ---------------------------------------------------------------------------- load and probe
def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(JIT_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _find_or_build(build_if_missing: bool):
    try:
        return importlib.import_module(AOT_MODULE)
    except ModuleNotFoundError as exc:  # not built ahead of time (the usual case)
        aot_error = None if exc.name and AOT_MODULE.startswith(exc.name) else \
            f"{AOT_MODULE} does not load ({exc}); rebuild it"
    except ImportError as exc:  # built, but for another torch / CUDA
        aot_error = f"{AOT_MODULE} exists but does not load ({exc}); rebuild it"
    arch = device_arch()
    path = cached_build(arch)
    if path is None and build_if_missing:
        print(f"stylegan_fast: JIT-compiling the CUDA extension for {_sm(arch)} (once; cached "
              f"in {cache_root()})", file=sys.stderr, flush=True)
        path = build(arch).path
    if path is None:
        raise NotBuilt(aot_error or NOT_BUILT)
    try:
        return _import_file(path)
    except ImportError as exc:
        raise BuildError(f"the cached CUDA extension {path} does not load ({exc}); delete "
                         f"{path.parent} and rebuild (`stylegan-fast build-ext --force`)") from exc


def load(*, build: bool = False):
    """The extension module: AOT, else cached, else (``build=True``) JIT-compiled now.

    Raises :class:`NotBuilt` (not remembered) when it exists nowhere and ``build`` is False, and
    :class:`BuildError` when building or loading failed; that failure is remembered, so later
    calls in this process raise it again at once instead of recompiling. The backend registry
    re-probes after its own ``prepare``; code that loads or builds the extension another way and
    wants ``auto`` to notice calls ``stylegan_fast.ops.backends.forget_probes("cuda")`` (this
    module does not import the registry, which imports it).
    """
    module = _STATE["module"]
    if module is not None:  # every op call asks: no lock once loaded (it is never unloaded)
        return module
    with _STATE_LOCK:
        if _STATE["module"] is not None:
            return _STATE["module"]
        if _STATE["error"] is not None:
            raise BuildError(_STATE["error"])
        try:
            module = _find_or_build(build)
        except BuildError as exc:
            _STATE["error"] = str(exc)
            raise
        _STATE["module"] = module
    return module


def loaded_module():
    """The extension if it is loaded in this process, else None (never builds)."""
    return _STATE["module"]


def remembered_error() -> Optional[str]:
    return _STATE["error"]


def probe(device_type: str) -> Optional[str]:
    """The registry's cheap probe: None when the extension is built (AOT or cached) and can run
    on ``device_type`` tensors; never compiles."""
    if device_type != "cuda":
        return "CUDA kernels need CUDA tensors"
    if torch.version.cuda is None:
        return "torch is a CPU-only build"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    try:
        load(build=False)
    except (NotBuilt, BuildError) as exc:
        return str(exc)
    return None


def prepare(device_type: str) -> Optional[str]:
    """The registry's prepare step for an explicit ``use_backend("cuda")``: JIT-build now."""
    reason = probe(device_type)
    if reason is None or device_type != "cuda" or not torch.cuda.is_available():
        return reason
    try:
        load(build=True)
    except BuildError as exc:
        return str(exc)
    return None


def status() -> str:
    """One line for ``stylegan-fast doctor``: where the extension is (never builds)."""
    if _STATE["module"] is not None:
        return f"loaded from {getattr(_STATE['module'], '__file__', '?')}"
    if _STATE["error"] is not None:
        return f"failed: {_STATE['error'].splitlines()[0]}"
    try:
        aot = importlib.util.find_spec(AOT_MODULE) is not None
    except ModuleNotFoundError:
        aot = False
    if aot:
        return f"built ahead of time ({AOT_MODULE})"
    try:
        arch = default_arch()
        path = cached_build(arch)
    except (OSError, ValueError) as exc:
        return f"unknown ({exc})"
    if path is not None:
        return f"cached for {_sm(arch)}: {path}"
    return f"not built for {_sm(arch)} (`stylegan-fast build-ext`, or JIT on explicit use)"


# ---------------------------------------------------------------------------- worker process
def _worker(arch: str, out: Path, verbose: bool) -> None:
    """Runs in the child: torch's ninja-based JIT builder, into ``out``. The output (with ptxas'
    register and spill report) goes to the parent's build.log."""
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    from torch.utils import cpp_extension

    cflags, cuda_flags = compile_flags()
    root = source_dir()
    print(f"stylegan_fast: building {JIT_NAME} for TORCH_CUDA_ARCH_LIST={arch} with "
          f"CUDA_HOME={cpp_extension.CUDA_HOME}", flush=True)
    cpp_extension.load(
        name=JIT_NAME, sources=[str(root / s) for s in SOURCES], build_directory=str(out),
        extra_cflags=cflags, extra_cuda_cflags=cuda_flags, with_cuda=True, verbose=True)
    if verbose:
        print("stylegan_fast: build finished", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="(internal) compile the extension into --out")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    _worker(args.arch, args.out, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
