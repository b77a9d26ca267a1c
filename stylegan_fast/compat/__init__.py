"""Other StyleGAN codebases on stylegan_fast: drop-in replacements for NVIDIA's StyleGAN2-ADA /
StyleGAN3 ops (``compat.nvlabs``), and NVIDIA's released StyleGAN1 models (``compat.stylegan1``)."""
