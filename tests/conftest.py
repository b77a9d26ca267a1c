import os

import pytest
import torch

# Without a GPU, run the Triton kernels in Triton's interpreter so that the whole op suite
# covers the triton backend too. Must be set before any kernel module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A CPU-only torch (e.g. 2.13.0+cpu) has no CUDA compiler support: what needs one (compiling or
# loading the real extension) skips there, with this reason. Tests of the build machinery's own
# logic patch torch.version.cuda instead, so they run on any torch.
CPU_ONLY_TORCH = torch.version.cuda is None
NEEDS_CUDA_TORCH = "needs a CUDA build of torch (this one is CPU-only)"


def pytest_configure(config):
    config.addinivalue_line("markers", f"needs_cuda_torch: skipped where torch is a CPU-only "
                                       f"build ({NEEDS_CUDA_TORCH})")


def pytest_collection_modifyitems(config, items):
    if not CPU_ONLY_TORCH:
        return
    skip = pytest.mark.skip(reason=NEEDS_CUDA_TORCH)
    for item in items:
        if item.get_closest_marker("needs_cuda_torch") is not None:
            item.add_marker(skip)
