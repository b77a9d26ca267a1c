"""StyleGAN's layer epilogue with its parameters: noise, bias, leaky ReLU, AdaIN with a style."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..ops import style_epilogue
from .equalized import LRELU_SLOPE, Linear

NOISE_MODES = ("random", "const", "none")


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")


class StyleEpilogue(nn.Module):
    """Everything after a synthesis conv, for x [N, C, H, W] and a latent w [N, w_dim]::

        [style_scale, style_bias] = style_affine(w)                 (equalized dense, gain 1)
        t = x + noise * noise_strength[c] + bias[c]
        y = instance_norm(lrelu(t, 0.2)) * (style_scale + 1) + style_bias

    in one :func:`stylegan_fast.ops.style_epilogue` call (no output gain after the leaky ReLU,
    eps 1e-8). ``noise_strength`` and ``bias`` are initialised to zero.
    """

    def __init__(self, channels: int, w_dim: int = 512):
        super().__init__()
        self.channels = channels
        self.noise_strength = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.style_affine = Linear(w_dim, 2 * channels, bias=True, gain=1.0)

    def styles(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(style_scale, style_bias), each [N, C]."""
        style = self.style_affine(w)
        return style[:, :self.channels], style[:, self.channels:]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``noise_mode``: 'random' draws fresh N(0, 1) noise [N, 1, H, W] inside the op, 'const'
        uses ``noise`` ([1 or N, 1, H, W], required), 'none' adds no noise."""
        check_noise_mode(noise_mode)
        if noise_mode == "const" and noise is None:
            raise ValueError("noise_mode='const' needs the noise map: pass noise=[1, 1, H, W]")
        style_scale, style_bias = self.styles(w)
        return style_epilogue(x, self.bias, style_scale, style_bias,
                              None if noise_mode == "none" else self.noise_strength,
                              noise if noise_mode == "const" else None, alpha=LRELU_SLOPE)
