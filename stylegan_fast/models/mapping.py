"""StyleGAN's mapping network z -> w, broadcast to one w per synthesis layer."""
from __future__ import annotations

import torch
from torch import nn

from ..nn import Linear, pixel_norm


class MappingNetwork(nn.Module):
    """``w = f(pixel_norm(z))`` with f = ``num_layers`` x [equalized dense, bias, lrelu(0.2)] at
    learning-rate multiplier ``lrmul``; returns ``ws`` [N, num_ws, w_dim] (w repeated).

    ``w_avg`` [w_dim] (a buffer, float32) tracks the mean w for truncation; in training mode
    every forward pass updates it from its batch::

        w_avg = lerp(mean_n(w), w_avg, w_avg_beta)  =  mean_n(w) + w_avg_beta * (w_avg - mean_n(w))
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, num_ws: int = 18, num_layers: int = 8,
                 lrmul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = z_dim, w_dim, num_ws, w_avg_beta
        self.layers = nn.Sequential(*[
            Linear(z_dim if i == 0 else w_dim, w_dim, act="lrelu", lrmul=lrmul)
            for i in range(num_layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, update_w_avg: bool = True) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim]; updates ``w_avg`` when training and
        ``update_w_avg``."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got shape {tuple(z.shape)}")
        w = self.layers(pixel_norm(z))
        if self.training and update_w_avg:
            self.track_w_avg(w)
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    @torch.no_grad()
    def track_w_avg(self, w: torch.Tensor) -> None:
        """One step of ``w_avg = lerp(mean_n(w), w_avg, w_avg_beta)`` for w [N, w_dim]."""
        batch_mean = w.detach().to(self.w_avg.dtype).mean(dim=0)
        self.w_avg.copy_(torch.lerp(batch_mean, self.w_avg, self.w_avg_beta))
