"""Packaging entry point. Metadata lives in pyproject.toml.

With ``STYLEGAN_FAST_BUILD_CUDA=1`` the CUDA extension (csrc/) is compiled here, ahead of time, as
``stylegan_fast.ops.cuda._C``::

    STYLEGAN_FAST_BUILD_CUDA=1 pip install --no-build-isolation -e .

(``--no-build-isolation``: the build needs the installed CUDA build of torch). The arch list comes
from ``TORCH_CUDA_ARCH_LIST`` (default ``8.0;8.6;8.9;9.0+PTX``). Without the variable nothing is
compiled and the extension is JIT-built on first explicit use of the ``cuda`` backend, or by
``stylegan-fast build-ext``.
"""
import os

from setuptools import setup


def cuda_extension_kwargs() -> dict:
    if os.environ.get("STYLEGAN_FAST_BUILD_CUDA", "0") not in ("1", "true", "yes"):
        return {}
    import importlib.util
    import sys
    from pathlib import Path

    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    # build.py holds the single list of sources and flags; load it without importing the package
    # (which needs torch and would register ops during the build).
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(
        "_sgf_build", here / "stylegan_fast" / "ops" / "cuda" / "build_config.py")
    config = importlib.util.module_from_spec(spec)
    sys.modules["_sgf_build"] = config
    spec.loader.exec_module(config)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", config.DEFAULT_AOT_ARCHS)
    cxx_flags, cuda_flags = config.compile_flags()
    extension = CUDAExtension(
        name="stylegan_fast.ops.cuda._C",
        sources=[f"csrc/{name}" for name in config.SOURCES],
        extra_compile_args={"cxx": cxx_flags, "nvcc": cuda_flags},
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


setup(**cuda_extension_kwargs())
