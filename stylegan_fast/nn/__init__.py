"""Layers for StyleGAN-family networks on :mod:`stylegan_fast.ops`, each usable on its own."""
from .epilogue import NOISE_MODES, StyleEpilogue
from .equalized import Conv2d, Linear, apply_bias_act
from .normalization import (
                            MinibatchStdDev,
                            PixelNorm,
                            minibatch_stddev,
                            pixel_norm,
                            stddev_group_size,
)
from .resample import (
                            Blur,
                            Downsample,
                            Upsample,
                            blur2d,
                            downconv2d,
                            downsample2d,
                            fused_downconv_weight,
                            fused_upconv_weight,
                            upconv2d,
                            upsample2d,
)

__all__ = [
                            "NOISE_MODES",
                            "Blur",
                            "Conv2d",
                            "Downsample",
                            "Linear",
                            "MinibatchStdDev",
                            "PixelNorm",
                            "StyleEpilogue",
                            "Upsample",
                            "apply_bias_act",
                            "blur2d",
                            "downconv2d",
                            "downsample2d",
                            "fused_downconv_weight",
                            "fused_upconv_weight",
                            "minibatch_stddev",
                            "pixel_norm",
                            "stddev_group_size",
                            "upconv2d",
                            "upsample2d",
]
