"""G_ema from a training checkpoint (rebuilt from the architecture stored in its config), or
from one of NVIDIA's official StyleGAN1 pickles (converted in memory)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from ..models import Generator
from ..train import checkpoint
from ..train.config import TrainConfig


@dataclass
class TrainedGenerator:
    """A generator ready for inference (eval mode, no gradients) and the level of detail it was
    trained up to: a checkpoint saved while progressive growing was still under way synthesizes
    at ``lod`` > 0 (a lower resolution), where its weights have been trained.

    ``truncation``: the model's default (psi, cutoff) in our convention (:meth:`Generator.truncate`:
    cutoff None = every layer, 0 = none): (1.0, 8) for our checkpoints, NVIDIA's recorded
    defaults (0.7, 8) for a converted official model. ``official``: where a converted model came
    from (None for ours)."""

    G: Generator
    lod: float = 0.0
    path: Optional[Path] = None
    nimg: Optional[int] = None
    truncation: tuple = (1.0, 8)
    official: Optional[dict] = None

    @property
    def device(self) -> torch.device:
        return self.G.w_avg.device

    @property
    def image_resolution(self) -> int:
        return self.G.resolution // 2 ** int(self.lod)

    def synthesize(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R] in [-1, 1] (not clamped)."""
        with torch.no_grad():
            return self.G.synthesis(ws.to(self.device), noise_mode, self.lod)

    def map(self, z: torch.Tensor, truncation_psi: float = 1.0,
            truncation_cutoff: Optional[int] = 8) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim], truncated towards ``w_avg`` (see
        :meth:`Generator.truncate`) when psi != 1."""
        with torch.no_grad():
            return self.G.styles(z.to(self.device), truncation_psi, truncation_cutoff)


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``auto``/None: the GPU if there is one, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but no CUDA GPU is visible")
    return device


def generator_from_state(state: dict) -> Generator:
    """A Generator with the architecture of ``state['config']`` and the weights of
    ``state['G_ema']`` (eval mode, no gradients, on the CPU)."""
    missing = [key for key in ("config", "G_ema") if key not in state]
    if missing:
        raise ValueError(f"the checkpoint has no {' and no '.join(missing)}: not a training "
                         f"checkpoint of stylegan-fast train")
    c = TrainConfig.from_dict(state["config"])
    G = Generator(c.resolution, z_dim=c.z_dim, w_dim=c.w_dim, img_channels=c.channels or 3,
                  channel_base=c.channel_base, channel_max=c.channel_max,
                  mapping_layers=c.mapping_layers, style_mixing_prob=c.style_mixing,
                  progressive=c.progressive, style_mixing_mode=c.mixing)
    G.load_state_dict(state["G_ema"])
    return G.eval().requires_grad_(False)


def load_generator(path: Union[str, Path], device: Union[str, torch.device, None] = "auto"
                   ) -> TrainedGenerator:
    """G_ema of a checkpoint file, of the newest checkpoint in a run folder, or Gs of an official
    StyleGAN1 pickle (``*.pkl``, converted in memory: :mod:`stylegan_fast.compat.stylegan1`)."""
    device = resolve_device(device)
    if Path(path).suffix == ".pkl":
        from ..compat.stylegan1 import converted_state

        path = Path(path)
        state = converted_state(path, networks=("Gs",))
    else:
        path, state = checkpoint.open_checkpoint(path)  # a folder: its newest usable one
    progress = state.get("progress", {})
    G = generator_from_state(state).to(device)
    official = state.get("official")
    truncation = (1.0, 8)
    if official is not None:
        from ..compat.stylegan1 import official_truncation

        truncation = official_truncation(official["truncation_psi"],
                                         official["truncation_cutoff"])
    return TrainedGenerator(G, float(progress.get("lod", 0.0)), path, progress.get("nimg"),
                            truncation, official)


def as_trained(generator, device: Union[str, torch.device, None] = "auto") -> TrainedGenerator:
    """A checkpoint path / run folder, a :class:`TrainedGenerator` or a bare Generator (used at
    lod 0, put in eval mode) -> :class:`TrainedGenerator`."""
    if isinstance(generator, TrainedGenerator):
        return generator
    if isinstance(generator, Generator):
        return TrainedGenerator(generator.eval())
    if isinstance(generator, (str, Path)):
        return load_generator(generator, device)
    raise TypeError(f"expected a checkpoint path, a TrainedGenerator or a Generator, got "
                    f"{type(generator).__name__}")
