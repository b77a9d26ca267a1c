"""StyleGAN generator: mapping + synthesis, style mixing (training), truncation (inference)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork

STYLE_MIXING_MODES = ("per-sample", "per-batch")


class Generator(nn.Module):
    """z [N, z_dim] -> image [N, img_channels, R, R] (R: resolution, or the top level's at lod > 0).

    ``G.mapping(z) -> ws [N, num_ws, w_dim]``, ``G.synthesis(ws, noise_mode, lod) -> image``;
    ``G(z, ...)`` runs :meth:`styles` then the synthesis network. The defaults are the official
    StyleGAN1 configuration (26,219,627 parameters at 1024 px).

    ``style_mixing_mode``: 'per-sample' draws the mixing decision and crossover layer for each
    sample; 'per-batch' draws one of each per batch, as NVIDIA's StyleGAN1 training does.
    """

    def __init__(self, resolution: int, z_dim: int = 512, w_dim: int = 512, img_channels: int = 3,
                 channel_base: int = 8192, channel_max: int = 512, mapping_layers: int = 8,
                 mapping_lrmul: float = 0.01, w_avg_beta: float = 0.995,
                 style_mixing_prob: float = 0.9, fused_upconv_min_res: int = 128,
                 progressive: bool = True, style_mixing_mode: str = "per-sample"):
        super().__init__()
        if style_mixing_mode not in STYLE_MIXING_MODES:
            raise ValueError(f"style_mixing_mode must be one of {', '.join(STYLE_MIXING_MODES)}, "
                             f"got {style_mixing_mode!r}")
        self.resolution, self.z_dim, self.w_dim = resolution, z_dim, w_dim
        self.style_mixing_prob, self.style_mixing_mode = style_mixing_prob, style_mixing_mode
        self.synthesis = SynthesisNetwork(resolution, w_dim, img_channels, channel_base,
                                          channel_max, fused_upconv_min_res, progressive)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, mapping_lrmul,
                                      w_avg_beta)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean w [w_dim] (the mapping network's buffer)."""
        return self.mapping.w_avg

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: Optional[int] = 8) -> torch.Tensor:
        """``w_avg + psi * (ws - w_avg)`` for layers < ``cutoff`` (every layer when None)."""
        truncated = self.w_avg + psi * (ws - self.w_avg)
        if cutoff is None or cutoff >= self.num_ws:
            return truncated
        layer = torch.arange(self.num_ws, device=ws.device)
        return torch.where((layer < cutoff)[None, :, None], truncated, ws)

    def draw_crossover(self, batch: int, num_active_ws: int, device=None) -> torch.Tensor:
        """Per sample (or once for the batch, ``style_mixing_mode='per-batch'``): with
        probability ``style_mixing_prob`` a crossover layer uniform in [1, num_active_ws), else
        ``num_ws`` (no mixing). int64 [batch]."""
        draws = 1 if self.style_mixing_mode == "per-batch" else batch
        crossover = torch.randint(1, num_active_ws, (draws,), device=device).expand(batch)
        mixed = (torch.rand(draws, device=device) < self.style_mixing_prob).expand(batch)
        return torch.where(mixed, crossover, torch.full_like(crossover, self.num_ws))

    @staticmethod
    def mix_styles(ws1: torch.Tensor, ws2: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
        """Layers < crossover[n] take ws1[n], the others ws2[n]."""
        layer = torch.arange(ws1.shape[1], device=ws1.device)
        return torch.where((layer[None, :] < crossover[:, None])[..., None], ws1, ws2)

    def styles(self, z: torch.Tensor, truncation_psi: float = 1.0,
               truncation_cutoff: Optional[int] = 8, lod: float = 0.0) -> torch.Tensor:
        """The ws that :meth:`forward` synthesizes from z.

        Training: ``w_avg`` is updated from z's batch, and with ``style_mixing_prob`` > 0 a second
        latent z2 ~ N(0, I) is mapped and mixed in per sample or per batch (:meth:`draw_crossover`,
        among the layers active at ``lod``). Inference: truncation towards ``w_avg`` when psi != 1.
        """
        if self.training:
            if truncation_psi != 1:
                raise ValueError("truncation is for inference only: call G.eval() first")
            if self.style_mixing_prob > 0:
                n = z.shape[0]
                both = self.mapping(torch.cat([z, torch.randn_like(z)]), update_w_avg=False)
                self.mapping.track_w_avg(both[:n, 0])
                crossover = self.draw_crossover(n, self.synthesis.num_active_ws(lod), z.device)
                return self.mix_styles(both[:n], both[n:], crossover)
            return self.mapping(z)
        ws = self.mapping(z)
        if truncation_psi != 1:
            ws = self.truncate(ws, truncation_psi, truncation_cutoff)
        return ws

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = 8, noise_mode: str = "random",
                lod: float = 0.0) -> torch.Tensor:
        return self.synthesis(self.styles(z, truncation_psi, truncation_cutoff, lod),
                              noise_mode, lod)
