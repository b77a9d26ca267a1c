"""The cuda backend's build, cache, probe and failure handling (fast: nothing is compiled here;
the real compile runs in .ci/run via `stylegan-fast build-ext`, and the kernels are tested on a GPU
by the op tests, which pick up every available backend)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from stylegan_fast import cli
from stylegan_fast.ops import backends
from stylegan_fast.ops.cuda import build

PTXAS_SAMPLE = """\
ptxas info    : Compiling entry function '_ZN3sgf6kernelIfLi4EEEvPf' for 'sm_90'
ptxas info    : Function properties for _ZN3sgf6kernelIfLi4EEEvPf
    16 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 107 registers, used 1 barriers, 12288 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_Z5otherv' for 'sm_90'
ptxas info    : Function properties for _Z5otherv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 13 registers, used 0 barriers, 360 bytes cmem[0]
"""


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty extension cache, no AOT module, no remembered load result or cached probes."""
    monkeypatch.setenv("STYLEGAN_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "AOT_MODULE", "stylegan_fast_no_such_module._C")
    monkeypatch.setattr(build, "_STATE", {"module": None, "error": None})
    backends.forget_probes("cuda")
    backends.forget_probes("triton")
    warned = set(backends._WARNED)
    yield tmp_path
    backends.forget_probes("cuda")
    backends.forget_probes("triton")
    backends._WARNED.clear()
    backends._WARNED.update(warned)


def cuda_build_of_torch(monkeypatch):
    """Make torch look like a CUDA build (its own CUDA version, else 13.0): the toolchain and
    probe logic after that check is the same on any torch, so it is tested on a CPU-only one too
    (whose own answer, "torch is a CPU-only build", is tested separately)."""
    monkeypatch.setattr(torch.version, "cuda", torch.version.cuda or "13.0")


@pytest.fixture
def cuda_torch(monkeypatch):
    cuda_build_of_torch(monkeypatch)


def fake_gpu(monkeypatch, arch="9.0"):
    cuda_build_of_torch(monkeypatch)  # a visible GPU implies a CUDA build of torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(build, "device_arch", lambda device=None: arch)


def test_import_builds_and_imports_nothing_of_the_backend():
    code = ("import sys, stylegan_fast, stylegan_fast.ops as ops\n"
            "assert 'stylegan_fast.ops.cuda' not in sys.modules\n"
            "status = ops.available_backends('cpu')['cuda']\n"
            "assert not status.available and 'need CUDA tensors' in status.reason, status\n"
            "assert 'stylegan_fast.ops.cuda.build' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("given,expected", [("9.0", "9.0"), ("90", "9.0"), ("sm_86", "8.6"),
                                            ("8.0;9.0+PTX", "8.0;9.0+PTX"), ("8.0 9.0", "8.0;9.0"),
                                            ("9.0a", "9.0a"), ("100", "10.0")])
def test_normalize_arch(given, expected):
    assert build.normalize_arch(given) == expected


def test_normalize_arch_rejects_garbage():
    with pytest.raises(ValueError, match="bad CUDA arch"):
        build.normalize_arch("hopper")


def test_cache_key_names_source_torch_cuda_and_arch(tmp_path, monkeypatch):
    key = build.cache_key("9.0")
    assert key.startswith(build.source_hash())
    assert f"cu{torch.version.cuda}" in key and key.endswith("sm90")
    assert "torch" + torch.__version__.split("+")[0] in key
    assert build.cache_key("8.0") != key
    copy = tmp_path / "csrc"
    copy.mkdir()
    for name in build.SOURCES + build.HEADERS:
        (copy / name).write_bytes((build.source_dir() / name).read_bytes())
    monkeypatch.setattr(build, "source_dir", lambda: copy)
    assert build.cache_key("9.0") == key
    (copy / "plane.cuh").write_text((copy / "plane.cuh").read_text() + "\n// changed\n")
    assert build.cache_key("9.0") != key


def test_sources_and_flags_keep_accuracy_and_warnings_as_errors():
    for name in build.SOURCES + build.HEADERS:
        assert (build.source_dir() / name).is_file(), name
    assert "--use_fast_math" not in build.CUDA_FLAGS
    assert {"-Werror", "all-warnings", "-v"} <= set(build.CUDA_FLAGS)
    assert "-Werror" in build.CXX_FLAGS


def test_missing_nvcc_is_one_clear_error(tmp_path, monkeypatch, cuda_torch):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with pytest.raises(build.BuildError, match=r"nvcc not found: CUDA_HOME=.* has no bin/nvcc"):
        build.find_toolchain()
    monkeypatch.delenv("CUDA_HOME")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(build.environment, "find_nvcc", lambda: None)
    with pytest.raises(build.BuildError, match="nvcc not found .*install the CUDA"):
        build.find_toolchain()


def test_cuda_major_version_mismatch_is_one_clear_error(monkeypatch, cuda_torch):
    monkeypatch.setattr(build.environment, "find_nvcc", lambda: "/x/bin/nvcc")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    other = str(int(torch.version.cuda.split(".")[0]) - 1)
    monkeypatch.setattr(build, "_nvcc_release", lambda nvcc: f"{other}.4")
    with pytest.raises(build.BuildError, match=f"CUDA version mismatch: .* CUDA {other}.4 but "
                                               f"torch was built with CUDA {torch.version.cuda}"):
        build.find_toolchain()


def test_missing_ninja_is_one_clear_error(monkeypatch, cuda_torch):
    monkeypatch.setattr(build.environment, "find_nvcc", lambda: "/x/bin/nvcc")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(build, "_nvcc_release", lambda nvcc: torch.version.cuda)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.BuildError, match="ninja not found on PATH: `pip install ninja`"):
        build.find_toolchain()


def test_cpu_only_torch_is_one_clear_error(monkeypatch):
    """What a CPU-only torch gets, before any toolchain lookup, on any torch."""
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(build.environment, "find_nvcc", lambda: "/x/bin/nvcc")
    with pytest.raises(build.BuildError, match="torch is a CPU-only build: install a CUDA build"):
        build.find_toolchain()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build.probe("cuda") == "torch is a CPU-only build"


def test_build_ext_without_nvcc_fails_clearly(tmp_path):
    """The real command line (this process's torch, unpatched), with CUDA_HOME pointing at an
    empty folder: one message, exit 2 (a user error). A CPU-only torch is refused first."""
    env = dict(os.environ, CUDA_HOME=str(tmp_path), STYLEGAN_FAST_CACHE=str(tmp_path / "c"))
    result = subprocess.run([sys.executable, "-m", "stylegan_fast.cli", "build-ext", "--arch",
                             "9.0"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    expected = "torch is a CPU-only build" if torch.version.cuda is None else "nvcc not found"
    assert len(errors) == 1 and expected in errors[0], result.stderr


def test_probe_on_gpu_never_builds_for_auto(fresh, monkeypatch):
    fake_gpu(monkeypatch)

    def no_build(*args, **kwargs):
        raise AssertionError("auto must not compile")

    monkeypatch.setattr(build, "build", no_build)
    reason = build.probe("cuda")
    assert reason is not None and "not built yet" in reason and "build-ext" in reason
    assert build.remembered_error() is None  # not a failure: a later explicit request may build


def test_explicit_request_builds_once_and_remembers_the_failure(fresh, monkeypatch):
    fake_gpu(monkeypatch)
    calls = []

    def failing_build(arch=None, **kwargs):
        calls.append(arch)
        raise build.BuildError("nvcc not found (test)")

    monkeypatch.setattr(build, "build", failing_build)
    assert "nvcc not found (test)" in build.prepare("cuda")
    with pytest.raises(build.BuildError, match="nvcc not found"):
        build.load(build=True)
    assert "nvcc not found (test)" in build.probe("cuda")
    assert calls == ["9.0"]  # tried once per process
    assert "nvcc not found (test)" in build.remembered_error()


def test_failed_build_falls_back_with_one_warning(fresh, monkeypatch, tmp_path):
    """An explicit request raises the build error; auto then warns once, naming it, and falls
    back (to triton, or ref where triton is missing)."""
    fake_gpu(monkeypatch)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "empty"))
    with backends.use_backend("cuda"), pytest.raises(backends.BackendUnavailableError,
                                                     match="nvcc not found"):
        backends.resolve_backend("adain", torch.device("cuda"))
    with pytest.warns(RuntimeWarning, match="cuda: nvcc not found") as record:
        chosen = backends.resolve_backend("adain", torch.device("cuda"))
    assert chosen in ("triton", "ref")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.resolve_backend("adain", torch.device("cuda")) == chosen
    assert len([w for w in record if "falls back" in str(w.message)]) == 1


def fake_worker(monkeypatch, body: str):
    """Replace the compiler child process by a tiny Python script running ``body`` in --out."""
    def command(arch, out_dir, verbose):
        return [sys.executable, "-c", f"import sys, pathlib; out = pathlib.Path({str(out_dir)!r})\n"
                + body]

    monkeypatch.setattr(build, "_worker_command", command)
    monkeypatch.setattr(build, "find_toolchain", lambda: build.Toolchain(
        sys.executable, Path(sys.prefix), torch.version.cuda or "13.0", sys.executable))


def test_build_is_atomic_cached_and_leaves_no_lock(fresh, monkeypatch):
    fake_worker(monkeypatch, f"print({PTXAS_SAMPLE!r})\n"
                "(out / '_stylegan_fast_cuda.so').write_text('so')\n")
    result = build.build("9.0")
    root = build.cache_root()
    assert result.path == root / build.cache_key("9.0") / "_stylegan_fast_cuda.so"
    assert result.path.read_text() == "so" and not result.cached
    assert [k.registers for k in result.kernels] == [107, 13]
    assert sorted(p.name for p in root.iterdir()) == [build.cache_key("9.0")]  # no tmp, no lock
    again = build.build("9.0")
    assert again.cached and again.path == result.path and len(again.kernels) == 2


def test_failed_build_keeps_the_log_and_cleans_up(fresh, monkeypatch):
    fake_worker(monkeypatch, "print('csrc/plane.cuh(12): error: boom'); sys.exit(2)\n")
    with pytest.raises(build.BuildError, match=r"(?s)failed \(exit 2\); full log: .*failed\.log"
                                               r".*error: boom"):
        build.build("9.0")
    root = build.cache_root()
    assert [p.name for p in root.iterdir()] == [f"{build.cache_key('9.0')}.failed.log"]


def test_waits_for_a_live_lock_and_takes_over_a_dead_one(fresh):
    root = build.cache_root()
    root.mkdir(parents=True)
    lock, ready = root / "k.lock", root / "k" / "x.so"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket
    lock.write_text(f"pid={dead} host={socket.gethostname()} start=0\n")
    assert not build._lock_owner_alive(lock)
    assert build._acquire_lock(lock, ready, timeout=5)  # taken over
    assert f"pid={os.getpid()}" in lock.read_text()
    assert build._lock_owner_alive(lock)
    old = time.time() - 10 * 3600
    os.utime(lock, (old, old))  # a holder that stopped refreshing it
    assert not build._lock_owner_alive(lock)
    lock.write_text(f"pid={os.getpid()} host={socket.gethostname()} start=0\n")
    ready.parent.mkdir()
    ready.write_text("so")
    assert not build._acquire_lock(lock, ready, timeout=5)  # someone else finished the build


def test_parse_ptxas():
    kernels = build.parse_ptxas(PTXAS_SAMPLE)
    assert [(k.registers, k.smem, k.stack, k.spill_stores, k.spill_loads, k.arch)
            for k in kernels] == [(107, 12288, 16, 4, 8, "sm_90"), (13, 0, 0, 0, 0, "sm_90")]
    assert kernels[0].name.startswith("kernel<float, 4>") or kernels[0].name.startswith("_Z")


def test_build_ext_command_reports_kernels(fresh, monkeypatch, capsys):
    fake_worker(monkeypatch, f"print({PTXAS_SAMPLE!r})\n"
                "(out / '_stylegan_fast_cuda.so').write_text('so')\n")
    assert cli.main(["build-ext", "--arch", "90"]) == 0
    out = capsys.readouterr().out
    assert "_stylegan_fast_cuda.so" in out and "built in" in out
    assert "107" in out and "2 kernels, 1 with register spills" in out


def test_doctor_reports_the_extension(fresh, cuda_torch, capsys):
    assert cli.main(["doctor"]) == 0
    assert "cuda ext." in capsys.readouterr().out


def test_doctor_on_a_cpu_only_torch(fresh, monkeypatch, capsys):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "none: CPU build" in out and "cuda ext." not in out and "backends for cpu" in out


@pytest.mark.needs_cuda_torch
def test_cached_real_build_loads_and_does_not_spill_much():
    """After `stylegan-fast build-ext --arch 9.0` (.ci/run), the cached extension loads without a
    GPU, exports every op, and ptxas reports no kernel spilling more than a few bytes."""
    path = build.cached_build("9.0")
    if path is None:
        pytest.skip("no cached sm_90 build (run `stylegan-fast build-ext --arch 9.0`)")
    module = build._import_file(path)
    for name in ("bias_act_forward", "bias_act_backward", "bias_act_backward_smooth",
                 "generate_noise", "noise_inject_forward", "noise_inject_backward",
                 "adain_forward", "adain_backward", "style_epilogue_forward",
                 "style_epilogue_backward", "upfirdn2d_forward", "filtered_lrelu_forward",
                 "filtered_lrelu_masked"):
        assert callable(getattr(module, name)), name
    kernels = build.parse_ptxas((path.parent / "build.log").read_text())
    assert len(kernels) > 50
    assert max(k.spill_stores for k in kernels) <= 16
    assert max(k.registers for k in kernels) <= 128
