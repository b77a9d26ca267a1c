"""What the CUDA extension is built from and with: shared by the JIT builder (build.py) and the
ahead-of-time build in setup.py, which loads this file directly (stdlib only, no package imports).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

SOURCES = ("bindings.cpp", "bias_act.cu", "noise_inject.cu", "adain.cu", "style_epilogue.cu",
           "upfirdn2d.cu", "filtered_lrelu.cu")
HEADERS = ("launchers.h", "common.cuh", "plane.cuh", "cluster.cuh")
# nvcc: -O3 without --use_fast_math (the statistics need IEEE division and sqrt), every warning an
# error, and ptxas' register / shared memory / spill report for each kernel.
CUDA_FLAGS = ("-O3", "-std=c++20", "-Xptxas", "-v", "-Werror", "all-warnings",
              "-Xcompiler", "-Wall,-Wextra,-Werror")
CXX_FLAGS = ("-O3", "-std=c++20", "-Wall", "-Wextra", "-Werror")
DEFAULT_AOT_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def nvidia_include_dirs() -> list[str]:
    """Include folders of the pip ``nvidia`` packages (where the CUDA build of torch from PyPI
    gets cusparse.h, cublas_v2.h, ...). They are passed with -isystem, after the toolkit's own
    include folder, so they only fill in what the toolkit lacks."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    dirs = []
    for base in spec.submodule_search_locations:
        dirs += sorted(str(p) for p in Path(base).glob("*/include") if p.is_dir())
    return dirs


def compile_flags() -> tuple[list[str], list[str]]:
    """(host C++ flags, nvcc flags), with the pip nvidia include folders."""
    includes = [flag for d in nvidia_include_dirs() for flag in ("-isystem", d)]
    return list(CXX_FLAGS) + includes, list(CUDA_FLAGS) + includes
