"""What people do with a trained generator: images per seed, style-mixing figures, interpolation
loops (GIF/MP4) and FID.

Each tool is a plain function (also reachable as ``stylegan_fast.<name>``) and a ``stylegan-fast``
subcommand (:mod:`.commands`); they all run G_ema of a training checkpoint (:mod:`.loading`).
"""
from .fid_metric import dataset_statistics, fid, frechet_distance, load_feature_network
from .generation import generate, generate_images, latents_from_seeds
from .interpolation import interpolate, interpolation_frames, slerp
from .loading import TrainedGenerator, load_generator
from .mixing import mix, style_layers, style_mixing_images
from .seeds import SpecError, parse_seeds

__all__ = [
    "SpecError", "TrainedGenerator", "dataset_statistics", "fid", "frechet_distance", "generate",
    "generate_images", "interpolate", "interpolation_frames", "latents_from_seeds",
    "load_feature_network", "load_generator", "mix", "parse_seeds", "slerp", "style_layers",
    "style_mixing_images",
]
