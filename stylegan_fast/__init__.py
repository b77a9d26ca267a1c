"""stylegan_fast: fused CUDA/Triton kernels for StyleGAN's layer epilogue, and models on them."""
__version__ = "0.1.0"

from . import ops  # noqa: F401  (registers the custom ops; compiles nothing)

# The generation tools (stylegan_fast.generate, .mix, .interpolate, .fid, ...), imported on first
# use so that importing stylegan_fast stays cheap.
_TOOLS = ("generate", "generate_images", "mix", "style_mixing_images", "interpolate",
          "interpolation_frames", "fid", "frechet_distance", "load_generator", "parse_seeds")


def __getattr__(name):
    if name in _TOOLS:
        from . import tools

        return getattr(tools, name)
    raise AttributeError(f"module 'stylegan_fast' has no attribute {name!r}")
