"""Drop-in replacements for the ops of other StyleGAN codebases (``compat.nvlabs``: NVIDIA's
StyleGAN2-ADA / StyleGAN3 ``torch_utils.ops``)."""
