"""StyleGAN1 (Karras et al. 2019) generator and discriminator built on :mod:`stylegan_fast.nn`."""
from .discriminator import Discriminator, DiscriminatorBlock, DiscriminatorEpilogue
from .generator import Generator
from .levels import channels_at, num_levels, split_lod
from .mapping import MappingNetwork
from .synthesis import SynthesisBlock, SynthesisNetwork

__all__ = [
    "Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue", "Generator", "MappingNetwork",
    "SynthesisBlock", "SynthesisNetwork", "channels_at", "num_levels", "split_lod",
]
