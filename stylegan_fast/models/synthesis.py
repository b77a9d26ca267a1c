"""StyleGAN's synthesis network: constant input, two styled layers per level, ToRGB per level."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import Blur, Conv2d, StyleEpilogue, upsample2d
from ..nn.epilogue import check_noise_mode
from .levels import channels_at, level_resolution, num_levels, split_lod


class SynthesisBlock(nn.Module):
    """One level: [upsample + conv3x3 -> blur] (not at 4 px) -> epilogue0 -> conv3x3 -> epilogue1.

    The convs have no bias (it is in the epilogue). At ``fused_upconv`` the upsample + conv runs
    as one stride-2 transposed conv (the same function, see :mod:`stylegan_fast.nn.resample`).
    """

    def __init__(self, in_channels: Optional[int], out_channels: int, w_dim: int,
                 fused_upconv: bool = False):
        super().__init__()
        if in_channels is None:  # 4 px: the epilogue follows the constant input directly
            self.conv0_up = self.blur = None
        else:
            self.conv0_up = Conv2d(in_channels, out_channels, 3, bias=False, up=True,
                                   fused_resample=fused_upconv)
            self.blur = Blur()
        self.epilogue0 = StyleEpilogue(out_channels, w_dim)
        self.conv1 = Conv2d(out_channels, out_channels, 3, bias=False)
        self.epilogue1 = StyleEpilogue(out_channels, w_dim)

    def forward(self, x: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor, noise_mode: str,
                noise0: torch.Tensor, noise1: torch.Tensor) -> torch.Tensor:
        if self.conv0_up is not None:
            x = self.blur(self.conv0_up(x))
        x = self.epilogue0(x, w0, noise_mode, noise0)
        return self.epilogue1(self.conv1(x), w1, noise_mode, noise1)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], layer i styled by ws[:, i].

    ``num_ws = 2 * num_levels``. The constant input [1, C, 4, 4] starts at ones. ``const_noise<i>``
    are fixed N(0, 1) buffers [1, 1, H, W], one per layer, used by ``noise_mode='const'``.

    Progressive growing (``lod`` > 0, see :mod:`.levels`): only the levels up to ``top`` run, the
    image has the top level's resolution, and during a fade-in::

        img = lerp(upsample2d(to_rgb[top - 1](x_{top-1})), to_rgb[top](x_top), fade_in)

    ``lod=0`` is the fixed full-resolution network. With ``progressive=False`` only the last ToRGB
    exists (fewer parameters than the official model) and ``lod`` must stay 0.
    """

    def __init__(self, resolution: int, w_dim: int = 512, img_channels: int = 3,
                 channel_base: int = 8192, channel_max: int = 512, fused_upconv_min_res: int = 128,
                 progressive: bool = True):
        super().__init__()
        self.resolution, self.w_dim, self.img_channels = resolution, w_dim, img_channels
        self.num_levels = num_levels(resolution)
        self.num_ws = 2 * self.num_levels
        self.progressive = progressive
        channels = [channels_at(level_resolution(k), channel_base, channel_max)
                    for k in range(self.num_levels)]
        self.const = nn.Parameter(torch.ones(1, channels[0], 4, 4))
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleDict()
        for level, out_channels in enumerate(channels):
            res = level_resolution(level)
            self.blocks.append(SynthesisBlock(channels[level - 1] if level else None, out_channels,
                                              w_dim, fused_upconv=res >= fused_upconv_min_res))
            if progressive or level == self.num_levels - 1:
                self.to_rgb[f"b{res}"] = Conv2d(out_channels, img_channels, 1, gain=1.0)
            for i in (2 * level, 2 * level + 1):
                self.register_buffer(f"const_noise{i}", torch.randn(1, 1, res, res))

    def const_noise(self, layer: int) -> torch.Tensor:
        return getattr(self, f"const_noise{layer}")

    def num_active_ws(self, lod: float = 0.0) -> int:
        """The layers that run at ``lod`` (the first ones): 2 per level up to the top."""
        top, _ = split_lod(lod, self.num_levels)
        return 2 * (top + 1)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                lod: float = 0.0) -> torch.Tensor:
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        check_noise_mode(noise_mode)
        top, fade_in = split_lod(lod, self.num_levels)
        if top != self.num_levels - 1 and not self.progressive:
            raise ValueError("this SynthesisNetwork was built with progressive=False: lod must "
                             "be 0")
        x = self.const.expand(ws.shape[0], -1, -1, -1).clone()  # clone keeps const's layout
        lower_image = None
        for level in range(top + 1):
            x = self.blocks[level](x, ws[:, 2 * level], ws[:, 2 * level + 1], noise_mode,
                                   self.const_noise(2 * level), self.const_noise(2 * level + 1))
            if level == top - 1 and fade_in < 1:
                lower_image = upsample2d(self.to_rgb[f"b{level_resolution(level)}"](x))
        image = self.to_rgb[f"b{level_resolution(top)}"](x)
        if lower_image is not None:
            image = torch.lerp(lower_image, image, fade_in)
        return image
