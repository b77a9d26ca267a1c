"""An official StyleGAN1 pickle -> one of our training checkpoints (``stylegan-fast convert``).

The checkpoint holds ``G`` (from the pickle's G), ``D`` (from D) and ``G_ema`` (from Gs), fresh
Adam states, no random state (a fine-tuning run seeds its own), and a config for the same
architecture at the end of progressive growing: ``start_resolution`` = ``resolution``, so
``stylegan-fast train --resume DST.pt --data ... --out ...`` fine-tunes at lod 0, counting its
images from 0, with NVIDIA's per-batch style mixing. ``official`` records where it came from and
NVIDIA's truncation defaults (psi 0.7, cutoff 8; see :func:`.networks.official_truncation`).
"""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Union

import torch

from ... import __version__
from ...errors import UserError
from ...train import checkpoint
from ...train.config import TrainConfig
from ...train.optim import make_adam
from .networks import architecture, convert_discriminator, convert_generator
from .pickle_reader import read_official_pickle

FORMAT = "NVIDIA StyleGAN1 TensorFlow pickle"
STYLE_MIXING_MODE = "per-batch"  # NVIDIA's training draws one decision per minibatch


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_state(src: Union[str, Path], networks=("G", "D", "Gs")) -> dict:
    """The checkpoint dict of an official pickle (see the module docstring). ``networks``: the
    ones to convert (``("Gs",)`` for inference only: then only ``G_ema`` is filled)."""
    src = Path(src)
    official = read_official_pickle(src)
    arch = architecture(official["G"], official["D"])
    config = TrainConfig(data=None, out=None, resolution=arch["resolution"],
                         channels=arch["img_channels"], z_dim=arch["z_dim"], w_dim=arch["w_dim"],
                         mapping_layers=arch["mapping_layers"], channel_base=arch["channel_base"],
                         channel_max=arch["channel_max"], style_mixing=arch["style_mixing_prob"],
                         mixing=STYLE_MIXING_MODE, progressive=True,
                         start_resolution=arch["resolution"])
    state = {
        "config": config.to_dict(),
        "progress": {"nimg": 0, "step": 0, "elapsed_s": 0.0, "skipped_steps": 0,
                     "opt_resolution": None, "lod": 0.0},
        "official": {"format": FORMAT, "source": src.name, "sha256": _sha256(src),
                     "networks": {role: net.name for role, net in official.items()},
                     "truncation_psi": arch["truncation_psi"],
                     "truncation_cutoff": arch["truncation_cutoff"],
                     "style_mixing_mode": STYLE_MIXING_MODE},
        "versions": {"stylegan_fast": __version__, "torch": str(torch.__version__)},
    }
    state["G_ema"] = convert_generator(official["Gs"], arch, STYLE_MIXING_MODE).state_dict()
    if "G" in networks:
        G = convert_generator(official["G"], arch, STYLE_MIXING_MODE)
        state["G"], state["opt_G"] = G.state_dict(), _fresh_adam(G, config.lr)
    if "D" in networks:
        D = convert_discriminator(official["D"], arch)
        state["D"], state["opt_D"] = D.state_dict(), _fresh_adam(D, config.lr)
    state.update(scaler_G={}, scaler_D={}, rng=[],
                 sample_z=torch.randn(config.sample_grid, config.z_dim,
                                      generator=torch.Generator().manual_seed(config.seed)))
    return state


def _fresh_adam(module: torch.nn.Module, lr: float) -> dict:
    return make_adam(module.parameters(), lr).state_dict()


def convert(src: Union[str, Path], dst: Union[str, Path], overwrite: bool = False) -> Path:
    """Convert the official pickle ``src`` into our checkpoint ``dst`` (written atomically; an
    existing ``dst`` is kept unless ``overwrite``)."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        raise UserError(f"destination {str(dst)!r} is a folder: name the checkpoint file to "
                        f"write, e.g. {str(dst / (src.stem + '.pt'))!r}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists: choose another name, or pass --force to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError("the destination is the official pickle itself")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"the folder of {str(dst)!r} does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise PermissionError(errno.EACCES, "cannot write there (permission denied)",
                              str(dst.parent))
    state = converted_state(src)
    return checkpoint.write_atomically(state, dst)
