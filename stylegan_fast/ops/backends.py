"""Backend registry and selection for the fused ops.

A *backend* is a family of implementations (``eager``, ``ref``, ``triton``, ``cuda``) with a
priority and a probe that says whether it can run on a given device type. An *implementation* is
what one backend provides for one op: an object with the ``forward``/``backward`` callables that
the op's module documents. Adding a backend for an op is one call::

    register_impl("bias_act", "triton", BiasActTriton)

The built-in backends:

* ``eager``: each op's plain differentiable definition (its ``*_reference`` function) called in
  place of the custom op, so autograd records ordinary PyTorch ops and saves what they save;
  nothing fused. Never chosen by ``auto``: it is the baseline that benchmarks compare against
  (and that ``torch.compile`` optimizes as a whole). Its implementation of an op is that function.
* ``ref``: the custom op with the op module's ``Reference``: plain-PyTorch math, but the op's own
  memory-lean backward (saves only what the op documents). The definition of correctness.
* ``triton``, ``cuda``: fused kernels, loaded lazily from their packages (``module=`` below).

Selection, per op call and device type:

* an explicit name (innermost ``use_backend(name)``, else ``STYLEGAN_FAST_BACKEND``) is used as is,
  or raises :class:`BackendUnavailableError` with the reason;
* ``auto`` takes the highest-priority backend that is available for the device and implements the
  op, and warns once per (device type, op) when a backend meant for that device was skipped.

The environment variable is read when an op is first traced by ``torch.compile``; change it before
the process starts (or use ``use_backend``, which compiled code honours by recompiling).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

ENV_VAR = "STYLEGAN_FAST_BACKEND"
AUTO = "auto"


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run the op here; the message says why."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why not available, or a short description when it is


@dataclass(frozen=True)
class _Backend:
    name: str
    priority: int  # higher is preferred by ``auto``
    probe: Callable[[str], Optional[str]]  # device type -> None if usable, else the reason
    auto_devices: tuple  # device types on which ``auto`` considers it ("*" = all)
    description: str
    module: Optional[str]  # imported on first use; registers the backend's implementations
    prepare: Optional[Callable[[str], Optional[str]]]  # expensive set-up, on explicit request


_BACKENDS: dict[str, _Backend] = {}
_IMPLS: dict[tuple[str, str], object] = {}
_PROBED: dict[tuple[str, str], Optional[str]] = {}
_LOADED: dict[str, Optional[str]] = {}  # backend -> None once its module imported, else the error
_PREPARED: dict[tuple[str, str], Optional[str]] = {}  # (backend, device type) -> prepare's answer
_OVERRIDES: list[str] = []
_WARNED: set = set()
# (op, device type, requested name) -> the backend chosen; emptied whenever the registry, a probe
# or a prepared build changes. A use_backend block or a new STYLEGAN_FAST_BACKEND value is another
# requested name, hence another key.
_RESOLVED: dict[tuple[str, str, str], str] = {}


def register_backend(name: str, *, priority: int, probe: Callable[[str], Optional[str]],
                     auto_devices=("*",), description: str = "",
                     module: Optional[str] = None,
                     prepare: Optional[Callable[[str], Optional[str]]] = None) -> None:
    """Declare a backend. ``probe(device_type)`` returns None when it can run there now, else why
    not; it must be cheap (``auto`` calls it).

    ``module`` (e.g. ``"stylegan_fast.ops.triton"``) is imported the first time the backend is
    probed successfully, never at import of stylegan_fast; it calls :func:`register_impl`.
    ``prepare(device_type)`` does expensive set-up (a JIT build) and returns None or why it
    failed; it runs only when the backend is requested explicitly and the probe says it is not
    ready, at most once per device type and process.
    """
    if name == AUTO or not name.isidentifier():
        raise ValueError(f"backend name {name!r} is not allowed")
    _BACKENDS[name] = _Backend(name, priority, probe, tuple(auto_devices), description, module,
                               prepare)
    _LOADED.pop(name, None)
    forget_probes(name)


def unregister_backend(name: str) -> None:
    """Remove a backend and its implementations (for plugins and tests)."""
    _BACKENDS.pop(name, None)
    _LOADED.pop(name, None)
    for key in [k for k in _IMPLS if k[1] == name]:
        del _IMPLS[key]
    for key in [k for k in _PREPARED if k[0] == name]:
        del _PREPARED[key]
    forget_probes(name)
    _RESOLVED.clear()


def register_impl(op: str, backend: str, impl: object) -> None:
    """Register ``impl`` (an object with the op's ``forward``/``backward``) for ``op`` on ``backend``."""
    if backend not in _BACKENDS:
        raise ValueError(f"register_backend({backend!r}, ...) must come before its implementations")
    _IMPLS[(op, backend)] = impl
    _RESOLVED.clear()


def get_impl(op: str, backend: str) -> object:
    try:
        return _IMPLS[(op, backend)]
    except KeyError:
        raise BackendUnavailableError(f"backend {backend!r} has no implementation of {op}") from None


def backend_names() -> list[str]:
    """Registered backends, most preferred first."""
    return sorted(_BACKENDS, key=lambda n: -_BACKENDS[n].priority)


def forget_probes(name: str) -> None:
    """Probe ``name`` afresh next time (e.g. after its extension was built in this process)."""
    for key in [k for k in _PROBED if k[0] == name]:
        del _PROBED[key]
    _RESOLVED.clear()


def _probe(name: str, device_type: str) -> Optional[str]:
    key = (name, device_type)
    if key not in _PROBED:
        try:
            _PROBED[key] = _BACKENDS[name].probe(device_type) or _load(name)
        except Exception as exc:  # a probe must never take the op down with it
            _PROBED[key] = f"probe failed: {type(exc).__name__}: {exc}"
    return _PROBED[key]


def _prepare(name: str, device_type: str) -> Optional[str]:
    """Run the backend's ``prepare`` once per device type; re-probe after it succeeds."""
    key = (name, device_type)
    if key not in _PREPARED:
        try:
            _PREPARED[key] = _BACKENDS[name].prepare(device_type)
        except Exception as exc:
            _PREPARED[key] = f"preparing {name} failed: {type(exc).__name__}: {exc}"
        forget_probes(name)
    return _PREPARED[key] or _probe(name, device_type)


def _load(name: str) -> Optional[str]:
    """Import the backend's module once; None on success, else why it failed."""
    module = _BACKENDS[name].module
    if module is not None and name not in _LOADED:
        try:
            importlib.import_module(module)
            _LOADED[name] = None
        except Exception as exc:
            _LOADED[name] = f"importing {module} failed: {type(exc).__name__}: {exc}"
    return _LOADED.get(name)


def _default_device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_backends(device=None) -> dict[str, BackendStatus]:
    """Each registered backend with whether it can run on ``device`` (default: the GPU if any)."""
    device_type = torch.device(device).type if device is not None else _default_device_type()
    result = {}
    for name in backend_names():
        reason = _probe(name, device_type)
        result[name] = BackendStatus(name, reason is None, reason or _BACKENDS[name].description)
    return result


def _check_name(name: str, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{source} must be a backend name (str), got {type(name).__name__}")
    key = name.strip().lower()
    if key != AUTO and key not in _BACKENDS:
        known = ", ".join([AUTO] + backend_names())
        raise ValueError(f"{source}: unknown backend {name!r}; choose one of: {known}")
    return key


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the ops inside the block on backend ``name`` (``'auto'`` restores automatic choice)."""
    key = _check_name(name, "use_backend(name)")
    _OVERRIDES.append(key)
    try:
        yield key
    finally:
        _OVERRIDES.pop()


def requested_backend() -> str:
    """The backend asked for right now: innermost ``use_backend``, else the env var, else auto."""
    if _OVERRIDES:
        return _OVERRIDES[-1]
    return os.environ.get(ENV_VAR, AUTO)


def eager_requested() -> bool:
    """Whether the ``eager`` baseline is asked for right now (``use_backend('eager')`` or the env
    var): layers then keep their plain-PyTorch formulation (``F.conv2d``, ...)."""
    return _is_eager(requested_backend())


def resolve_backend(op: str, device: torch.device) -> str:
    """The backend that runs ``op`` for tensors on ``device`` (raises if an explicit one can't).
    Eager calls look the answer up in a cache (a dict lookup per call); ``torch.compile`` bakes
    it into the graph (see :func:`_choose`)."""
    requested = requested_backend()
    if torch.compiler.is_compiling():
        return _choose(op, device.type, requested)
    key = (op, device.type, requested)
    backend = _RESOLVED.get(key)
    if backend is None:
        backend = _RESOLVED[key] = _choose(op, device.type, requested)
    return backend


def _constant_for_compile(fn):
    """What ``torch.compiler.assume_constant_result`` does (dynamo calls ``fn`` while tracing and
    bakes in the result: selection may warn or raise there), without importing torch._dynamo
    (and triton) when stylegan_fast is imported. tests/ops/test_backends.py checks the marker."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_for_compile
def _choose(op: str, device_type: str, requested: str) -> str:
    source = "use_backend(name)" if _OVERRIDES else ENV_VAR
    requested = _check_name(requested, source)
    if device_type == "meta":
        return _shape_only_backend(requested)
    if requested != AUTO:
        reason = _probe(requested, device_type)
        if reason is not None and _BACKENDS[requested].prepare is not None:
            reason = _prepare(requested, device_type)
        if reason is not None:
            raise BackendUnavailableError(
                f"backend {requested!r} was requested ({source}) but cannot run {op} on "
                f"{device_type}: {reason}")
        get_impl(op, requested)
        return requested
    skipped = []
    for name in backend_names():
        backend = _BACKENDS[name]
        meant_here = "*" in backend.auto_devices or device_type in backend.auto_devices
        if not meant_here:
            continue
        reason = _probe(name, device_type)
        if reason is None and (op, name) not in _IMPLS:
            reason = f"no implementation of {op}"
        if reason is None:
            if skipped and (device_type, op) not in _WARNED:
                _WARNED.add((device_type, op))
                why = "; ".join(f"{n}: {r}" for n, r in skipped)
                warnings.warn(f"stylegan_fast: {op} on {device_type} falls back to the {name!r} "
                              f"backend ({why}). Set {ENV_VAR} or use_backend() to choose "
                              f"explicitly.", RuntimeWarning, stacklevel=2)
            return name
        skipped.append((name, reason))
    raise BackendUnavailableError(f"no backend can run {op} on {device_type}: " +
                                  "; ".join(f"{n}: {r}" for n, r in skipped))


@_constant_for_compile
def _is_eager(requested: str) -> bool:
    return _check_name(requested, "use_backend(name)" if _OVERRIDES else ENV_VAR) == EAGER


def _shape_only_backend(requested: str) -> str:
    """The backend for meta tensors: they hold no data, so every custom op runs its fake kernel
    (shapes, dtypes and strides only), the same whichever backend it names. Nothing is probed,
    refused or warned about: ``eager`` keeps its plain PyTorch graph, any other request is
    'ref'. (FakeTensors keep their real device and select as real tensors would: torch.compile
    and torch.export record that backend in the graph.)"""
    return EAGER if requested == EAGER else "ref"


def _probe_triton(device_type: str) -> Optional[str]:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (it comes with the CUDA builds of torch)"
    if device_type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device is visible"
    if device_type == "cpu":
        if os.environ.get("TRITON_INTERPRET") == "1":
            return None
        return "Triton runs CPU tensors only in its interpreter (TRITON_INTERPRET=1, for testing)"
    return f"Triton does not run {device_type} tensors"


EAGER = "eager"
register_backend(EAGER, priority=-10, probe=lambda device_type: None, auto_devices=(),
                 description="plain differentiable PyTorch (each op's *_reference), autograd "
                             "through ordinary ops, nothing fused; explicit use only")
register_backend("ref", priority=0, probe=lambda device_type: None,
                 description="plain-PyTorch math behind the ops' lean autograd; the definition "
                             "of correctness, runs everywhere")
register_backend("triton", priority=10, probe=_probe_triton, auto_devices=("cuda",),
                 module="stylegan_fast.ops.triton", description="Triton kernels")


def _probe_cuda(device_type: str) -> Optional[str]:
    """The cuda backend's probe (stylegan_fast/ops/cuda/build.py), imported on first use only."""
    if device_type != "cuda":
        return "CUDA kernels need CUDA tensors"
    from .cuda import build

    return build.probe(device_type)


def _prepare_cuda(device_type: str) -> Optional[str]:
    """JIT-build the cuda extension (explicit requests only; stylegan_fast/ops/cuda/build.py)."""
    from .cuda import build

    return build.prepare(device_type)


register_backend("cuda", priority=20, probe=_probe_cuda, prepare=_prepare_cuda,
                 auto_devices=("cuda",), module="stylegan_fast.ops.cuda",
                 description="hand-written CUDA kernels (csrc/), AOT-built or JIT-cached")
