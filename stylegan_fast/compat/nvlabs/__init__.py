"""NVIDIA's StyleGAN2-ADA / StyleGAN3 op API (``torch_utils.ops``) on stylegan_fast's kernels.

Modules mirror NVIDIA's: :mod:`.bias_act` (``bias_act``, ``activation_funcs``),
:mod:`.upfirdn2d` (``upfirdn2d``, ``setup_filter``, ``filter2d``, ``upsample2d``,
``downsample2d``) and :mod:`.conv2d_gradfix` (``conv2d``, ``conv_transpose2d``,
``no_weight_gradients``, flags ``enabled`` and ``weight_gradients_disabled``). Written from the
public description of that API; none of NVIDIA's code (non-commercial license) is used.

One call switches a user's StyleGAN2-ADA / StyleGAN3 checkout (its networks, conv2d_resample and
losses, which call ``bias_act.bias_act(...)``, ``upfirdn2d.upfirdn2d(...)`` and
``conv2d_gradfix.conv2d(...)`` through the modules) to our kernels::

    import sys; sys.path.insert(0, "/path/to/stylegan3")     # the folder holding torch_utils/
    import stylegan_fast.compat.nvlabs as nvlabs
    replaced = nvlabs.install()      # {"torch_utils.ops.bias_act.bias_act": NVIDIA's function, ...}
    ...
    nvlabs.uninstall(replaced)       # puts NVIDIA's functions back

NVIDIA's conv2d_gradfix switches its custom op off on torch >= 1.11, so on torch 2.x their R1 and
path length run on PyTorch's slow conv double backward. The installed conv2d_gradfix functions
read NVIDIA's own module's ``enabled`` at each call (False, their default: plain ``F.conv2d``;
True, as their training loop sets it: ours, whose derivatives of every order convolve with the
layer's own kernel), and their ``no_weight_gradients`` makes our convolutions skip the weight
gradient as NVIDIA's did, which gives their training the fast R1 back.
"""
from __future__ import annotations

import importlib

from . import bias_act, conv2d_gradfix, upfirdn2d


def _always(function):
    """A replacement that does not depend on the module it goes into."""
    return lambda module: function


def _gradfix(name: str):
    """conv2d_gradfix's ``name`` bound to the flags (``enabled``, ...) of the module it goes into,
    so that NVIDIA's training loop, which sets them there, still switches it."""
    return lambda module: getattr(conv2d_gradfix.functions_reading(module), name)


# (NVIDIA's module, its function name, our replacement given that module). NVIDIA's setup_filter
# is plain PyTorch and stays.
REPLACEMENTS = (
    ("torch_utils.ops.bias_act", "bias_act", _always(bias_act.bias_act)),
    ("torch_utils.ops.upfirdn2d", "upfirdn2d", _always(upfirdn2d.upfirdn2d)),
    ("torch_utils.ops.upfirdn2d", "filter2d", _always(upfirdn2d.filter2d)),
    ("torch_utils.ops.upfirdn2d", "upsample2d", _always(upfirdn2d.upsample2d)),
    ("torch_utils.ops.upfirdn2d", "downsample2d", _always(upfirdn2d.downsample2d)),
    ("torch_utils.ops.conv2d_gradfix", "conv2d", _gradfix("conv2d")),
    ("torch_utils.ops.conv2d_gradfix", "conv_transpose2d", _gradfix("conv_transpose2d")),
    ("torch_utils.ops.conv2d_gradfix", "no_weight_gradients", _gradfix("no_weight_gradients")),
)


def install() -> dict:
    """Replace the functions of NVIDIA's ``torch_utils.ops`` modules with ours.

    Returns {"module.function": the function replaced} (empty if ours were already installed).
    Raises ImportError, saying what to put on ``sys.path``, when ``torch_utils`` cannot be
    imported."""
    modules = {}
    for module_name, _, _ in REPLACEMENTS:  # every module first: all replaced, or none
        try:
            modules[module_name] = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(
                f"stylegan_fast.compat.nvlabs.install() needs NVIDIA's {module_name} (from a "
                f"StyleGAN2-ADA or StyleGAN3 checkout): put the checkout's root folder, the one "
                f"holding torch_utils/, on sys.path first (import failed: {exc})") from exc
    replaced, swaps = {}, []
    for module_name, name, replacement_for in REPLACEMENTS:  # every look-up before any change
        module = modules[module_name]
        original, ours = getattr(module, name), replacement_for(module)
        if original is not ours:
            replaced[f"{module_name}.{name}"] = original
            swaps.append((module, name, ours))
    for module, name, ours in swaps:
        setattr(module, name, ours)
    return replaced


def uninstall(replaced: dict) -> None:
    """Put back the functions :func:`install` replaced (its return value)."""
    for qualified, original in replaced.items():
        module_name, name = qualified.rsplit(".", 1)
        setattr(importlib.import_module(module_name), name, original)


__all__ = ["bias_act", "conv2d_gradfix", "install", "uninstall", "upfirdn2d"]
