"""NVIDIA's StyleGAN2-ADA / StyleGAN3 op API (``torch_utils.ops``) on stylegan_fast's kernels.

Modules mirror NVIDIA's: :mod:`.bias_act` (``bias_act``, ``activation_funcs``). Written from the
public description of that API; none of NVIDIA's code (non-commercial license) is used.

One call switches a user's StyleGAN2-ADA / StyleGAN3 checkout (its networks, conv2d_resample and
losses, which call ``bias_act.bias_act(...)`` through the module) to our kernels::

    import sys; sys.path.insert(0, "/path/to/stylegan3")     # the folder holding torch_utils/
    import stylegan_fast.compat.nvlabs as nvlabs
    replaced = nvlabs.install()      # {"torch_utils.ops.bias_act.bias_act": NVIDIA's function}
    ...
    nvlabs.uninstall(replaced)       # puts NVIDIA's functions back
"""
from __future__ import annotations

import importlib

from . import bias_act

# (NVIDIA's module, its function name, our replacement)
REPLACEMENTS = (
    ("torch_utils.ops.bias_act", "bias_act", bias_act.bias_act),
)


def install() -> dict:
    """Replace the functions of NVIDIA's ``torch_utils.ops`` modules with ours.

    Returns {"module.function": the function replaced} (empty if ours were already installed).
    Raises ImportError, saying what to put on ``sys.path``, when ``torch_utils`` cannot be
    imported."""
    replaced = {}
    for module_name, name, ours in REPLACEMENTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(
                f"stylegan_fast.compat.nvlabs.install() needs NVIDIA's {module_name} (from a "
                f"StyleGAN2-ADA or StyleGAN3 checkout): put the checkout's root folder, the one "
                f"holding torch_utils/, on sys.path first (import failed: {exc})") from exc
        original = getattr(module, name)
        if original is not ours:
            setattr(module, name, ours)
            replaced[f"{module_name}.{name}"] = original
    return replaced


def uninstall(replaced: dict) -> None:
    """Put back the functions :func:`install` replaced (its return value)."""
    for qualified, original in replaced.items():
        module_name, name = qualified.rsplit(".", 1)
        setattr(importlib.import_module(module_name), name, original)


__all__ = ["bias_act", "install", "uninstall"]
