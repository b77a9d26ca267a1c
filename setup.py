"""Packaging entry point. Metadata lives in pyproject.toml.

The CUDA extension (csrc/) will be built here ahead of time when STYLEGAN_FAST_BUILD_CUDA=1 is set
(with ``pip install --no-build-isolation -e .``); without it nothing is compiled and the extension
is JIT-built on first use of the ``cuda`` backend.
"""
from setuptools import setup

setup()
