"""Read NVIDIA's released StyleGAN1 pickles without TensorFlow, dnnlib or their code.

A released file (``karras2019stylegan-<dataset>-<res>.pkl``) is a pickle of the tuple
``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects. Unpickling normally imports and runs
NVIDIA's classes (and the network's own module source); a pickle is a program. This reader maps
the only globals such a file holds to small stand-ins and refuses everything else:

- ``dnnlib.tflib.network.Network``  -> :class:`OfficialNetwork` (keeps the state dict, runs nothing)
- ``numpy.core.multiarray._reconstruct`` / ``scalar``, ``numpy.ndarray``, ``numpy.dtype``
  -> numpy's own array reconstruction (also under numpy 2's ``numpy._core`` names)

Each network's state: ``version``, ``name``, ``static_kwargs``, ``components`` (G/Gs: ``mapping``
and ``synthesis``), ``build_module_src`` (never executed), ``build_func_name`` and ``variables``
(a list of ``(local name, numpy value)``).
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from ...errors import UserError

try:  # numpy >= 1.26 / 2.x
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - older numpy
    from numpy.core import multiarray as _multiarray


class OfficialPickleError(UserError):
    """The file is not a StyleGAN1 pickle this reader accepts; the message says what was found."""


@dataclass
class OfficialNetwork:
    """The state of one ``dnnlib.tflib.network.Network``, as plain values."""
    name: str = ""
    build_func_name: str = ""
    static_kwargs: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)  # local name -> numpy array or scalar
    version: int = 0

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise OfficialPickleError(f"a dnnlib Network's state is a dict, found "
                                      f"{type(state).__name__}")
        variables = state.get("variables", [])
        try:
            variables = dict(variables)
        except (TypeError, ValueError):
            raise OfficialPickleError("a dnnlib Network's 'variables' is not a list of "
                                      "(name, value) pairs") from None
        self.__init__(name=state.get("name", ""), build_func_name=state.get("build_func_name", ""),
                      static_kwargs=dict(state.get("static_kwargs") or {}),
                      components=dict(state.get("components") or {}), variables=variables,
                      version=state.get("version", 0))

    def describe(self) -> str:
        return f"{self.build_func_name or '?'} network {self.name!r}"


NETWORK_CLASS = ("dnnlib.tflib.network", "Network")
_ALLOWED = {
    NETWORK_CLASS: OfficialNetwork,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(module, name): getattr(_multiarray, name)
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name in ("_reconstruct", "scalar")},
}
# Globals that identify a file of another kind, for a useful error.
_FOREIGN = (
    ("torch_utils", "a StyleGAN2-ADA / StyleGAN3 PyTorch pickle (convert only StyleGAN1's "
                    "TensorFlow releases; load those with NVIDIA's code)"),
    ("training.networks", "a StyleGAN2-ADA / StyleGAN3 PyTorch pickle"),
    ("tfutil", "a ProGAN (karras2018iclr) pickle of tfutil.Network"),
    ("torch", "a PyTorch file (torch.save), not an official pickle"),
)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        what = next((kind for prefix, kind in _FOREIGN
                     if module == prefix or module.startswith(prefix + ".")), None)
        raise OfficialPickleError(
            f"the pickle refers to {module}.{name}" + (f": {what}" if what else "") +
            "; a pickle is code, so only dnnlib.tflib.network.Network and numpy arrays are "
            "loaded")

    def persistent_load(self, pid):
        raise OfficialPickleError("the pickle holds persistent ids (a torch.save file?), not an "
                                  "official StyleGAN1 pickle")


def read_networks(path: Union[str, Path]) -> tuple:
    """The pickled object of ``path`` with NVIDIA's networks as :class:`OfficialNetwork`.

    Raises :class:`OfficialPickleError` for a truncated or foreign file, or one that names any
    global besides the network class and numpy's arrays."""
    path = Path(path)
    if path.is_dir():
        raise OfficialPickleError(f"official pickle {str(path)!r} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"official pickle {str(path)!r} does not exist")
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise OfficialPickleError(f"{path} is a zip file (a PyTorch checkpoint?), not an "
                                  f"official StyleGAN1 pickle")
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except OfficialPickleError as exc:
        raise OfficialPickleError(f"{path}: {exc}") from None
    except Exception as exc:  # truncated, damaged or not a pickle at all
        raise OfficialPickleError(f"{path} could not be read as a pickle "
                                  f"({type(exc).__name__}: {exc}): truncated, damaged or not an "
                                  f"official StyleGAN1 pickle") from None


def _describe(obj) -> str:
    return obj.describe() if isinstance(obj, OfficialNetwork) else type(obj).__name__


def read_official_pickle(path: Union[str, Path]) -> dict:
    """``{"G": ..., "D": ..., "Gs": ...}`` (:class:`OfficialNetwork`) of a StyleGAN1 release.

    Checks the tuple and each network's build function: G and Gs are ``G_style`` with the
    components ``mapping`` (``G_mapping``) and ``synthesis`` (``G_synthesis``), D is ``D_basic``.
    A StyleGAN2 TensorFlow pickle (``G_main``, ``D_stylegan2``) is refused by name."""
    found = read_networks(path)
    expected = "a tuple (G, D, Gs) of StyleGAN1 networks (G_style, D_basic, G_style)"
    if not isinstance(found, tuple):
        raise OfficialPickleError(f"{path} holds {_describe(found)}, expected {expected}")
    if len(found) != 3:
        raise OfficialPickleError(f"{path} holds a tuple of {len(found)} "
                                  f"({', '.join(map(_describe, found))}), expected {expected}: "
                                  f"D or Gs is missing")
    networks = dict(zip(("G", "D", "Gs"), found))
    for role, func in (("G", "G_style"), ("D", "D_basic"), ("Gs", "G_style")):
        net = networks[role]
        if not isinstance(net, OfficialNetwork) or net.build_func_name != func:
            hint = (" (a StyleGAN2 network)" if isinstance(net, OfficialNetwork)
                    and ("stylegan2" in net.build_func_name or net.build_func_name == "G_main")
                    else "")
            raise OfficialPickleError(f"{path}: {role} is {_describe(net)}{hint}, expected a "
                                      f"StyleGAN1 {func} network; the file holds "
                                      f"({', '.join(map(_describe, found))})")
    for role in ("G", "Gs"):
        components = networks[role].components
        for key, func in (("mapping", "G_mapping"), ("synthesis", "G_synthesis")):
            part = components.get(key)
            if not isinstance(part, OfficialNetwork) or part.build_func_name != func:
                raise OfficialPickleError(f"{path}: {role}'s component {key!r} is "
                                          f"{_describe(part) if part is not None else 'missing'}"
                                          f", expected a {func} network")
    return networks
