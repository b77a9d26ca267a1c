"""The ``stylegan-fast`` command line: ``doctor`` and ``bench`` (later issues add more)."""
from __future__ import annotations

import argparse
import os
import sys


def _doctor(args: argparse.Namespace) -> int:
    import torch

    from . import environment
    from .ops import available_backends
    from .ops.backends import ENV_VAR, requested_backend

    facts = environment.versions()
    print("stylegan_fast doctor")
    print(f"  python        {sys.version.split()[0]}")
    print(f"  torch         {facts['torch']} (CUDA {facts['cuda'] or 'none: CPU build'})")
    print(f"  triton        {facts['triton'] or 'not installed'}")
    print(f"  gpu           {environment.gpu_description() or 'none visible'}")
    for tool, found in environment.tool_versions().items():
        print(f"  {tool:<13} {found or 'not found'}")
    cache = environment.extension_cache_dir()
    print(f"  ext. cache    {cache}{'' if cache.is_dir() else ' (not created yet)'}")
    for lock in environment.stale_locks(cache):
        print(f"  STALE LOCK    {lock} (a build was killed; delete it)")
    print(f"  selection     {ENV_VAR}={os.environ.get(ENV_VAR, '(unset)')} -> "
          f"{requested_backend()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        print(f"backends for {device} tensors:")
        for status in available_backends(device).values():
            state = "available    " if status.available else "not available"
            print(f"  {status.name:<8} {state}  {status.reason}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from . import benchmark

    return benchmark.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylegan-fast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="what each backend needs and whether it is there")
    doctor.set_defaults(func=_doctor)
    bench = commands.add_parser("bench", help="time the ops per backend and print a table")
    from .benchmark import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
