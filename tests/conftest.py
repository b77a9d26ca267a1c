import os

import torch

# Without a GPU, run the Triton kernels in Triton's interpreter so that the whole op suite
# covers the triton backend too. Must be set before any kernel module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
