"""The ``triton`` backend: importing this package (done lazily by the backend registry on first
use, never by ``import stylegan_fast``) registers the Triton implementation of every op."""
from . import adain, bias_act, filtered_lrelu, noise_inject, style_epilogue, upfirdn2d
