"""stylegan_fast: fused CUDA/Triton kernels for StyleGAN's layer epilogue, and models on them."""
__version__ = "0.1.0"

from . import ops  # noqa: E402,F401  (registers the custom ops; compiles nothing)
