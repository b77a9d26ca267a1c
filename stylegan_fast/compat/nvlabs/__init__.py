"""NVIDIA's StyleGAN2-ADA / StyleGAN3 op API (``torch_utils.ops``) on stylegan_fast's kernels.

Modules mirror NVIDIA's: :mod:`.bias_act` (``bias_act``, ``activation_funcs``) and
:mod:`.upfirdn2d` (``upfirdn2d``, ``setup_filter``, ``filter2d``, ``upsample2d``,
``downsample2d``). Written from the
public description of that API; none of NVIDIA's code (non-commercial license) is used.

One call switches a user's StyleGAN2-ADA / StyleGAN3 checkout (its networks, conv2d_resample and
losses, which call ``bias_act.bias_act(...)`` and ``upfirdn2d.upfirdn2d(...)`` through the modules)
to our kernels::

    import sys; sys.path.insert(0, "/path/to/stylegan3")     # the folder holding torch_utils/
    import stylegan_fast.compat.nvlabs as nvlabs
    replaced = nvlabs.install()      # {"torch_utils.ops.bias_act.bias_act": NVIDIA's function, ...}
    ...
    nvlabs.uninstall(replaced)       # puts NVIDIA's functions back
"""
from __future__ import annotations

import importlib

from . import bias_act, upfirdn2d

# (NVIDIA's module, its function name, our replacement). NVIDIA's setup_filter is plain PyTorch
# and stays.
REPLACEMENTS = (
    ("torch_utils.ops.bias_act", "bias_act", bias_act.bias_act),
    ("torch_utils.ops.upfirdn2d", "upfirdn2d", upfirdn2d.upfirdn2d),
    ("torch_utils.ops.upfirdn2d", "filter2d", upfirdn2d.filter2d),
    ("torch_utils.ops.upfirdn2d", "upsample2d", upfirdn2d.upsample2d),
    ("torch_utils.ops.upfirdn2d", "downsample2d", upfirdn2d.downsample2d),
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
    replaced = {}
    for module_name, name, ours in REPLACEMENTS:
        original = getattr(modules[module_name], name)
        if original is not ours:
            setattr(modules[module_name], name, ours)
            replaced[f"{module_name}.{name}"] = original
    return replaced


def uninstall(replaced: dict) -> None:
    """Put back the functions :func:`install` replaced (its return value)."""
    for qualified, original in replaced.items():
        module_name, name = qualified.rsplit(".", 1)
        setattr(importlib.import_module(module_name), name, original)


__all__ = ["bias_act", "install", "uninstall", "upfirdn2d"]
