"""Fused StyleGAN epilogue ops and upfirdn2d resampling, each with selectable backends
(see :mod:`.backends`), and convolutions with a cheap second derivative (:mod:`.conv2d`)."""
from ._dispatch import custom_ops_only
from .adain import adain, adain_reference
from .backends import (
                       BackendStatus,
                       BackendUnavailableError,
                       available_backends,
                       register_backend,
                       register_impl,
                       resolve_backend,
                       use_backend,
)
from .bias_act import bias_act, bias_act_reference
from .conv2d import conv2d, conv_transpose2d, no_weight_gradients, weight_gradients_disabled
from .filtered_lrelu import filtered_lrelu, filtered_lrelu_reference
from .fma import fma
from .grid_sample import grid_sample
from .noise_inject import noise_inject, noise_inject_reference
from .style_epilogue import style_epilogue, style_epilogue_reference
from .upfirdn2d import (
                       downsample2d,
                       filter2d,
                       setup_filter,
                       upfirdn2d,
                       upfirdn2d_reference,
                       upsample2d,
)

__all__ = [
                       "BackendStatus",
                       "BackendUnavailableError",
                       "adain",
                       "adain_reference",
                       "available_backends",
                       "bias_act",
                       "bias_act_reference",
                       "conv2d",
                       "conv_transpose2d",
                       "custom_ops_only",
                       "downsample2d",
                       "filter2d",
                       "filtered_lrelu",
                       "filtered_lrelu_reference",
                       "fma",
                       "grid_sample",
                       "no_weight_gradients",
                       "noise_inject",
                       "noise_inject_reference",
                       "register_backend",
                       "register_impl",
                       "resolve_backend",
                       "setup_filter",
                       "style_epilogue",
                       "style_epilogue_reference",
                       "upfirdn2d",
                       "upfirdn2d_reference",
                       "upsample2d",
                       "use_backend",
                       "weight_gradients_disabled",
]
