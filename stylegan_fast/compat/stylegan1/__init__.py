"""NVIDIA's released StyleGAN1 models (TensorFlow pickles) in stylegan_fast, without TensorFlow.

::

    from stylegan_fast.compat import stylegan1
    stylegan1.convert("karras2019stylegan-ffhq-1024x1024.pkl", "ffhq-1024.pt")  # a checkpoint
    G = stylegan_fast.load_generator("karras2019stylegan-ffhq-1024x1024.pkl").G # or directly

:mod:`.pickle_reader` reads the file with a restricted unpickler (no NVIDIA code runs),
:mod:`.networks` maps the variables onto our Generator and Discriminator, :mod:`.convert` writes
the checkpoint. Written from the public description of the format (DESIGN.md section 9); none of
NVIDIA's code (non-commercial license) is used.
"""
from .convert import convert, converted_state
from .networks import architecture, convert_discriminator, convert_generator, official_truncation
from .pickle_reader import OfficialNetwork, OfficialPickleError, read_official_pickle

__all__ = ["OfficialNetwork", "OfficialPickleError", "architecture", "convert",
           "convert_discriminator", "convert_generator", "converted_state", "official_truncation",
           "read_official_pickle"]
