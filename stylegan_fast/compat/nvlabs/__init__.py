"""NVIDIA's StyleGAN2-ADA / StyleGAN3 op API (``torch_utils.ops``) on stylegan_fast's kernels.

Modules mirror NVIDIA's: :mod:`.bias_act` (``bias_act``, ``activation_funcs``),
:mod:`.upfirdn2d` (``upfirdn2d``, ``setup_filter``, ``filter2d``, ``upsample2d``,
``downsample2d``), :mod:`.conv2d_gradfix` (``conv2d``, ``conv_transpose2d``,
``no_weight_gradients``, flags ``enabled`` and ``weight_gradients_disabled``),
:mod:`.grid_sample_gradfix` (``grid_sample``, flag ``enabled``), :mod:`.fma` (``fma``) and
:mod:`.filtered_lrelu` (``filtered_lrelu``, StyleGAN3 only). Written from the public description
of that API; none of NVIDIA's code (non-commercial license) is used.

One call switches a user's StyleGAN2-ADA / StyleGAN3 checkout (its networks, conv2d_resample,
augment pipe and losses, which call ``bias_act.bias_act(...)``, ``upfirdn2d.upfirdn2d(...)``,
``conv2d_gradfix.conv2d(...)``, ``grid_sample_gradfix.grid_sample(...)``, ``fma.fma(...)`` and
``filtered_lrelu.filtered_lrelu(...)`` through the modules) to our kernels::

    import sys; sys.path.insert(0, "/path/to/stylegan3")     # the folder holding torch_utils/
    import stylegan_fast.compat.nvlabs as nvlabs
    replaced = nvlabs.install()      # {"torch_utils.ops.bias_act.bias_act": NVIDIA's function, ...}
    ...
    nvlabs.uninstall(replaced)       # puts NVIDIA's functions back

NVIDIA's own ``conv2d_resample`` calls through those modules, so it runs on ours unchanged. A
module that one of the two repos lacks (:data:`OPTIONAL_MODULES`: StyleGAN2-ADA has no
filtered_lrelu) is skipped when the checkout has no such module; any other failure to import one
fails :func:`install`, which then replaces nothing.

NVIDIA's conv2d_gradfix switches its custom op off on torch >= 1.11, so on torch 2.x their R1 and
path length run on PyTorch's slow conv double backward. The installed conv2d_gradfix functions
read NVIDIA's own module's ``enabled`` at each call (False, their default: plain ``F.conv2d``;
True, as their training loop sets it: ours, whose derivatives of every order convolve with the
layer's own kernel), and their ``no_weight_gradients`` makes our convolutions skip the weight
gradient as NVIDIA's did, which gives their training the fast R1 back. Likewise their
grid_sample_gradfix falls back to ``F.grid_sample`` outside torch 1.7-1.9 (StyleGAN2-ADA), whose
double backward older torch 2.x lacks, which broke ADA's augment with R1; the installed
``grid_sample`` is ours whatever their ``enabled`` says.
"""
from __future__ import annotations

import importlib

from . import bias_act, conv2d_gradfix, filtered_lrelu, fma, grid_sample_gradfix, upfirdn2d


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
    ("torch_utils.ops.grid_sample_gradfix", "grid_sample",
     _always(grid_sample_gradfix.grid_sample)),
    ("torch_utils.ops.fma", "fma", _always(fma.fma)),
    ("torch_utils.ops.filtered_lrelu", "filtered_lrelu", _always(filtered_lrelu.filtered_lrelu)),
)

# NVIDIA's modules that one of StyleGAN2-ADA and StyleGAN3 lacks: install() skips them where the
# checkout has none.
OPTIONAL_MODULES = frozenset({"torch_utils.ops.filtered_lrelu"})


def _not_importable(module_name: str, exc: ImportError) -> ImportError:
    return ImportError(
        f"stylegan_fast.compat.nvlabs.install() needs NVIDIA's {module_name} (from a "
        f"StyleGAN2-ADA or StyleGAN3 checkout): put the checkout's root folder, the one "
        f"holding torch_utils/, on sys.path first (import failed: {exc})")


def install() -> dict:
    """Replace the functions of NVIDIA's ``torch_utils.ops`` modules with ours.

    Returns {"module.function": the function replaced} (empty if ours were already installed).
    A module of :data:`OPTIONAL_MODULES` that the checkout lacks is skipped. Raises ImportError,
    saying what to put on ``sys.path``, when ``torch_utils`` or any other module cannot be
    imported, and then replaces nothing."""
    modules = {}
    for module_name, _, _ in REPLACEMENTS:  # every module first: all replaced, or none
        if module_name in modules:
            continue
        try:
            modules[module_name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if module_name in OPTIONAL_MODULES and exc.name == module_name:
                modules[module_name] = None  # this checkout has no such module (StyleGAN2-ADA)
                continue
            raise _not_importable(module_name, exc) from exc
        except ImportError as exc:
            raise _not_importable(module_name, exc) from exc
    replaced, swaps = {}, []
    for module_name, name, replacement_for in REPLACEMENTS:  # every look-up before any change
        module = modules[module_name]
        if module is None:
            continue
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


__all__ = ["OPTIONAL_MODULES", "REPLACEMENTS", "bias_act", "conv2d_gradfix", "filtered_lrelu",
           "fma", "grid_sample_gradfix", "install", "uninstall", "upfirdn2d"]
