"""ProGAN/StyleGAN1 discriminator: FromRGB per level, conv blocks down to 4 px, minibatch stddev."""
from __future__ import annotations

import torch
from torch import nn

from ..nn import Blur, Conv2d, Linear, MinibatchStdDev, downsample2d
from .levels import channels_at, level_resolution, num_levels, split_lod


class DiscriminatorBlock(nn.Module):
    """conv3x3 + bias + lrelu -> blur -> conv3x3 + 2x2 box down + bias + lrelu (one stride-2
    conv when ``fused_downconv``; the same function)."""

    def __init__(self, in_channels: int, out_channels: int, fused_downconv: bool = False):
        super().__init__()
        self.conv0 = Conv2d(in_channels, in_channels, 3, act="lrelu")
        self.blur = Blur()
        self.conv1_down = Conv2d(in_channels, out_channels, 3, act="lrelu", down=True,
                                 fused_resample=fused_downconv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1_down(self.blur(self.conv0(x)))


class DiscriminatorEpilogue(nn.Module):
    """At 4 px: minibatch stddev -> conv3x3 (C+F -> C) -> dense (C*16 -> hidden) -> dense (-> 1,
    gain 1, linear); lrelu after the first two."""

    def __init__(self, channels: int, hidden: int, mbstd_group_size: int = 4,
                 mbstd_num_features: int = 1):
        super().__init__()
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_features)
        self.conv = Conv2d(channels + mbstd_num_features, channels, 3, act="lrelu")
        self.dense = Linear(channels * 16, hidden, act="lrelu")
        self.out = Linear(hidden, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.mbstd(x))
        return self.out(self.dense(x.flatten(1)))


class Discriminator(nn.Module):
    """image [N, img_channels, R, R] -> score [N, 1]. Official StyleGAN1 defaults: 23,087,249
    parameters at 1024 px.

    Progressive growing (``lod`` > 0, see :mod:`.levels`): the image must have the top level's
    resolution; during a fade-in the top block's output is blended with the 2x2-downsampled
    image through the lower level's FromRGB::

        x = lerp(from_rgb[top - 1](downsample2d(img)), block[top](from_rgb[top](img)), fade_in)

    ``progressive=False`` keeps only the full-resolution FromRGB (``lod`` must stay 0).
    """

    def __init__(self, resolution: int, img_channels: int = 3, channel_base: int = 8192,
                 channel_max: int = 512, mbstd_group_size: int = 4, mbstd_num_features: int = 1,
                 fused_downconv_min_res: int = 128, progressive: bool = True):
        super().__init__()
        self.resolution, self.img_channels = resolution, img_channels
        self.num_levels = num_levels(resolution)
        self.progressive = progressive
        channels = [channels_at(level_resolution(k), channel_base, channel_max)
                    for k in range(self.num_levels)]
        self.from_rgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for level in range(self.num_levels):
            res = level_resolution(level)
            if progressive or level == self.num_levels - 1:
                self.from_rgb[f"b{res}"] = Conv2d(img_channels, channels[level], 1, act="lrelu")
            if level > 0:
                self.blocks[f"b{res}"] = DiscriminatorBlock(
                    channels[level], channels[level - 1], res >= fused_downconv_min_res)
        hidden = channels_at(2, channel_base, channel_max)  # the dense layer after the conv
        self.epilogue = DiscriminatorEpilogue(channels[0], hidden, mbstd_group_size,
                                              mbstd_num_features)

    def forward(self, img: torch.Tensor, lod: float = 0.0) -> torch.Tensor:
        top, fade_in = split_lod(lod, self.num_levels)
        if top != self.num_levels - 1 and not self.progressive:
            raise ValueError("this Discriminator was built with progressive=False: lod must be 0")
        res = level_resolution(top)
        if img.dim() != 4 or tuple(img.shape[1:]) != (self.img_channels, res, res):
            raise ValueError(f"img must be [N, {self.img_channels}, {res}, {res}] at lod={lod}, "
                             f"got {tuple(img.shape)}")
        x = self.from_rgb[f"b{res}"](img)
        for level in range(top, 0, -1):
            x = self.blocks[f"b{level_resolution(level)}"](x)
            if level == top and fade_in < 1:
                lower = self.from_rgb[f"b{level_resolution(level - 1)}"](downsample2d(img))
                x = torch.lerp(lower, x, fade_in)
        return self.epilogue(x)
