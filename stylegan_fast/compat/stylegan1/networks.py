"""NVIDIA's StyleGAN1 networks (as read by :mod:`.pickle_reader`) -> our Generator and
Discriminator with the same weights.

Architecture: from the networks' ``static_kwargs`` (missing keys: NVIDIA's defaults), checked
against the variables' shapes. Variables, per network, official name -> our state-dict key
(layouts: dense [in, out] -> [out, in], conv [kh, kw, in, out] -> [out, in, kh, kw]):

- ``Dense{i}/weight|bias`` (G_mapping) -> ``mapping.layers.{i}.weight|bias``
- ``dlatent_avg`` (G_style) -> ``mapping.w_avg``; ``noise{i}`` -> ``synthesis.const_noise{i}``
- ``4x4/Const/const`` -> ``synthesis.const``
- ``<R>x<R>/<L>/weight`` -> ``synthesis.blocks.{k}.conv0_up|conv1.weight``
- ``<R>x<R>/<L>/Noise/weight|bias|StyleMod`` -> ``...epilogue0|1.noise_strength|bias|style_affine``
- ``ToRGB_lod{k}/weight|bias`` -> ``synthesis.to_rgb.b<R>``

D: ``FromRGB_lod{k}`` -> ``from_rgb.b<R>``, ``<R>x<R>/Conv0|Conv1_down`` -> ``blocks.b<R>.conv0|
conv1_down``, ``4x4/Conv|Dense0|Dense1`` -> ``epilogue.conv|dense|out``. ``lod`` (run-time state)
must be 0: a released model has finished growing.

The official fused up-conv (``Conv0_up`` at >= 128 px) is a transposed conv with the unflipped
summed kernel, which equals upsample-then-conv with the kernel flipped in both spatial axes; ours
keeps the upsample-then-conv kernel in both paths, so those kernels are flipped on the way in.
Weights are stored unscaled on both sides (the mapping's carry 1/lrmul), so nothing is rescaled.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ...models import Discriminator, Generator, num_levels
from ...models.levels import level_resolution
from .pickle_reader import OfficialNetwork, OfficialPickleError

# Official keyword arguments our networks map, with NVIDIA's defaults (G_style, G_mapping,
# G_synthesis, D_basic share the names; each network receives G's kwargs).
MAPPED_DEFAULTS = {
    "num_channels": None, "resolution": None,  # read from the variables, checked when present
    "fmap_base": 8192, "fmap_max": 512, "latent_size": 512, "dlatent_size": 512,
    "mapping_layers": 8, "mapping_fmaps": 512, "dlatent_broadcast": None,
    "style_mixing_prob": 0.9, "truncation_psi": 0.7, "truncation_cutoff": 8,
}
# Arguments our networks implement only at NVIDIA's default value.
FIXED = {
    "label_size": 0, "fmap_decay": 1.0, "mapping_lrmul": 0.01, "mapping_nonlinearity": "lrelu",
    "nonlinearity": "lrelu", "use_wscale": True, "normalize_latents": True, "use_styles": True,
    "const_input_layer": True, "use_noise": True, "use_pixel_norm": False,
    "use_instance_norm": True, "fused_scale": "auto", "blur_filter": [1, 2, 1],
    "mbstd_group_size": 4, "mbstd_num_features": 1, "dlatent_avg_beta": 0.995,
}
# Run-time settings that do not change the weights' meaning.
RUN_TIME = {"dtype", "randomize_noise", "structure", "is_template_graph", "force_clean_graph",
            "is_training", "is_validation", "truncation_psi_val", "truncation_cutoff_val"}


def _kwargs(networks: list[OfficialNetwork]) -> dict:
    """The networks' static kwargs, merged (a conflict or an unsupported value is an error)."""
    merged: dict = {}
    for net in networks:
        for key, value in net.static_kwargs.items():
            if key in RUN_TIME:
                continue
            if key not in MAPPED_DEFAULTS and key not in FIXED:
                raise OfficialPickleError(
                    f"{net.describe()} has static kwarg {key}={value!r}, which StyleGAN1's "
                    f"networks do not take: not a StyleGAN1 release, or a modified one")
            if key in FIXED and _normalized(value) != _normalized(FIXED[key]):
                raise OfficialPickleError(
                    f"{net.describe()} has {key}={value!r}; stylegan_fast implements StyleGAN1 "
                    f"with {key}={FIXED[key]!r} only")
            if key in merged and _normalized(merged[key]) != _normalized(value):
                raise OfficialPickleError(f"the networks disagree on {key}: {merged[key]!r} and "
                                          f"{value!r} ({net.describe()})")
            merged[key] = value
    return {**MAPPED_DEFAULTS, **merged}


def _normalized(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def _shape(net: OfficialNetwork, name: str) -> tuple:
    if name not in net.variables:
        raise OfficialPickleError(f"{net.describe()} has no variable {name!r}")
    return tuple(np.shape(net.variables[name]))


def architecture(G: OfficialNetwork, D: OfficialNetwork) -> dict:
    """Our networks' arguments (and the official truncation defaults) for an official (G, D).

    Returns keys resolution, img_channels, z_dim, w_dim, channel_base, channel_max,
    mapping_layers, style_mixing_prob, truncation_psi, truncation_cutoff."""
    mapping, synthesis = G.components["mapping"], G.components["synthesis"]
    kw = _kwargs([G, mapping, synthesis, D])
    levels = sum(1 for name in synthesis.variables if name.startswith("ToRGB_lod")
                 and name.endswith("/weight"))
    resolution = 4 * 2 ** (levels - 1) if levels else 0
    try:
        num_levels(resolution)
    except ValueError:
        raise OfficialPickleError(f"{synthesis.describe()} has {levels} ToRGB layers "
                                  f"({resolution} px): stylegan_fast builds 8 to 1024 px") from None
    img_channels = _shape(synthesis, "ToRGB_lod0/weight")[-1]
    mapping_layers = sum(1 for name in mapping.variables
                         if name.startswith("Dense") and name.endswith("/weight"))
    found = {"resolution": resolution, "num_channels": img_channels,
             "mapping_layers": mapping_layers,
             "dlatent_broadcast": 2 * num_levels(resolution)}
    for key, value in found.items():
        if kw[key] is not None and kw[key] != value:
            raise OfficialPickleError(f"static kwargs say {key}={kw[key]!r}, the variables "
                                      f"{value!r}")
    if kw["mapping_fmaps"] != kw["dlatent_size"]:
        raise OfficialPickleError(f"mapping_fmaps={kw['mapping_fmaps']} differs from "
                                  f"dlatent_size={kw['dlatent_size']}: stylegan_fast's mapping "
                                  f"network has w_dim features in every layer")
    return dict(resolution=resolution, img_channels=img_channels, z_dim=kw["latent_size"],
                w_dim=kw["dlatent_size"], channel_base=kw["fmap_base"],
                channel_max=kw["fmap_max"], mapping_layers=mapping_layers,
                style_mixing_prob=float(kw["style_mixing_prob"]),
                truncation_psi=kw["truncation_psi"], truncation_cutoff=kw["truncation_cutoff"])




# ---- layouts -----------------------------------------------------------------------------------
def _same(value: np.ndarray) -> np.ndarray:
    return value


def _dense(value: np.ndarray) -> np.ndarray:  # [in, out] -> [out, in]
    return value.T


def _conv(value: np.ndarray) -> np.ndarray:  # [kh, kw, in, out] -> [out, in, kh, kw]
    return value.transpose(3, 2, 0, 1)


def _conv_flipped(value: np.ndarray) -> np.ndarray:  # the official fused up-conv kernel
    return _conv(value)[:, :, ::-1, ::-1]


Rule = tuple[OfficialNetwork, str, Callable]  # (network, official name, layout transform)


def _epilogue_rules(prefix: str, net: OfficialNetwork, scope: str) -> dict[str, Rule]:
    return {f"{prefix}.noise_strength": (net, f"{scope}/Noise/weight", _same),
            f"{prefix}.bias": (net, f"{scope}/bias", _same),
            f"{prefix}.style_affine.weight": (net, f"{scope}/StyleMod/weight", _dense),
            f"{prefix}.style_affine.bias": (net, f"{scope}/StyleMod/bias", _same)}


def generator_rules(official: OfficialNetwork, G: Generator) -> dict[str, Rule]:
    """Our G state-dict key -> where its value is in the official G_style network."""
    mapping, synthesis = official.components["mapping"], official.components["synthesis"]
    rules: dict[str, Rule] = {"mapping.w_avg": (official, "dlatent_avg", _same),
                              "synthesis.const": (synthesis, "4x4/Const/const", _same)}
    for i in range(len(G.mapping.layers)):
        rules[f"mapping.layers.{i}.weight"] = (mapping, f"Dense{i}/weight", _dense)
        rules[f"mapping.layers.{i}.bias"] = (mapping, f"Dense{i}/bias", _same)
    levels = G.synthesis.num_levels
    for level, block in enumerate(G.synthesis.blocks):
        res = level_resolution(level)
        scope, prefix = f"{res}x{res}", f"synthesis.blocks.{level}"
        if level == 0:
            first, second = "Const", "Conv"
        else:
            first, second = "Conv0_up", "Conv1"
            layout = _conv_flipped if block.conv0_up.fused_resample else _conv
            rules[f"{prefix}.conv0_up.weight"] = (synthesis, f"{scope}/Conv0_up/weight", layout)
        rules[f"{prefix}.conv1.weight"] = (synthesis, f"{scope}/{second}/weight", _conv)
        rules.update(_epilogue_rules(f"{prefix}.epilogue0", synthesis, f"{scope}/{first}"))
        rules.update(_epilogue_rules(f"{prefix}.epilogue1", synthesis, f"{scope}/{second}"))
        lod = levels - 1 - level
        for part in ("weight", "bias"):
            rules[f"synthesis.to_rgb.b{res}.{part}"] = (
                synthesis, f"ToRGB_lod{lod}/{part}", _conv if part == "weight" else _same)
        for i in (2 * level, 2 * level + 1):
            rules[f"synthesis.const_noise{i}"] = (synthesis, f"noise{i}", _same)
    return rules


def discriminator_rules(official: OfficialNetwork, D: Discriminator) -> dict[str, Rule]:
    """Our D state-dict key -> where its value is in the official D_basic network."""
    rules: dict[str, Rule] = {}

    def layer(ours: str, scope: str, layout: Callable) -> None:
        rules[f"{ours}.weight"] = (official, f"{scope}/weight", layout)
        rules[f"{ours}.bias"] = (official, f"{scope}/bias", _same)

    for level in range(D.num_levels):
        res = level_resolution(level)
        layer(f"from_rgb.b{res}", f"FromRGB_lod{D.num_levels - 1 - level}", _conv)
        if level > 0:
            layer(f"blocks.b{res}.conv0", f"{res}x{res}/Conv0", _conv)
            layer(f"blocks.b{res}.conv1_down", f"{res}x{res}/Conv1_down", _conv)
    layer("epilogue.conv", "4x4/Conv", _conv)
    layer("epilogue.dense", "4x4/Dense0", _dense)
    layer("epilogue.out", "4x4/Dense1", _dense)
    return rules


def load_official(module: torch.nn.Module, rules: dict[str, Rule],
                  networks: list[OfficialNetwork]) -> None:
    """Copy every official variable into ``module`` by ``rules``; an unmapped, missing, foreign
    or misshapen variable is an error that names it."""
    state = module.state_dict()
    unmapped = sorted(set(state) - set(rules))
    if unmapped:  # a bug of ours, not of the file
        raise RuntimeError(f"no official variable for {', '.join(unmapped)}")
    used = {(id(net), name) for net, name, _ in rules.values()}
    for net in networks:
        lod = net.variables.get("lod")
        if lod is not None and float(np.asarray(lod)) != 0:
            raise OfficialPickleError(
                f"{net.describe()} is at lod {float(np.asarray(lod)):g}: a snapshot taken during "
                f"progressive growing; only finished models (lod 0) are converted")
        extra = [name for name in net.variables
                 if name != "lod" and (id(net), name) not in used]
        if extra:
            raise OfficialPickleError(f"{net.describe()} has variables stylegan_fast does not "
                                      f"map: {', '.join(sorted(extra))}")
    converted = {}
    for key, (net, name, layout) in rules.items():
        value = net.variables.get(name)
        if value is None:
            raise OfficialPickleError(f"{net.describe()} has no variable {name!r} (needed for "
                                      f"{key})")
        array = np.asarray(value)
        if array.dtype.kind != "f":
            raise OfficialPickleError(f"{net.describe()} variable {name!r} is {array.dtype}, "
                                      f"expected floating point")
        array = np.ascontiguousarray(layout(array), dtype=np.float32)
        if array.shape != tuple(state[key].shape):
            raise OfficialPickleError(
                f"{net.describe()} variable {name!r} has shape {tuple(np.shape(value))}, which "
                f"gives {array.shape} for our {key}; expected {tuple(state[key].shape)}")
        if not np.isfinite(array).all():
            raise OfficialPickleError(f"{net.describe()} variable {name!r} is not finite")
        converted[key] = torch.from_numpy(array)
    module.load_state_dict(converted)


def convert_generator(official: OfficialNetwork, arch: dict,
                      style_mixing_mode: str = "per-batch") -> Generator:
    """Our Generator with the weights of the official G_style network ``official``."""
    G = Generator(arch["resolution"], z_dim=arch["z_dim"], w_dim=arch["w_dim"],
                  img_channels=arch["img_channels"], channel_base=arch["channel_base"],
                  channel_max=arch["channel_max"], mapping_layers=arch["mapping_layers"],
                  style_mixing_prob=arch["style_mixing_prob"],
                  style_mixing_mode=style_mixing_mode)
    load_official(G, generator_rules(official, G),
                  [official, official.components["mapping"], official.components["synthesis"]])
    return G


def convert_discriminator(official: OfficialNetwork, arch: dict) -> Discriminator:
    """Our Discriminator with the weights of the official D_basic network ``official``."""
    D = Discriminator(arch["resolution"], img_channels=arch["img_channels"],
                      channel_base=arch["channel_base"], channel_max=arch["channel_max"])
    load_official(D, discriminator_rules(official, D), [official])
    return D


def official_truncation(psi, cutoff) -> tuple[float, int]:
    """NVIDIA's (truncation_psi, truncation_cutoff) -> ours for :meth:`Generator.truncate`.

    Official: psi or cutoff None disables truncation. Ours: cutoff None truncates every layer,
    cutoff 0 none; so official None -> (1.0, 0)."""
    if psi is None or cutoff is None:
        return 1.0, 0
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, np.integer)) or cutoff < 0:
        raise ValueError(f"truncation_cutoff must be an int >= 0 or None, got {cutoff!r}")
    return float(psi), int(cutoff)


