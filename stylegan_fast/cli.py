"""The ``stylegan-fast`` command line: ``doctor``, ``bench``, ``build-ext``, ``train``, ``demo``,
``convert``, and the generation tools."""
from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

from .errors import UserError

PROG = "stylegan-fast"
# OSErrors that are the user's to fix (a path, a permission, the disk), printed as one line;
# any other OSError (EIO, ...) keeps its traceback.
USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                  NotADirectoryError)
USER_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG)


def print_error(prog: str, message: str) -> None:
    """The one way a user error is shown: ``<prog>: error: <message>``, one line on stderr."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message: str):
        print_error(self.prog, f"{message} (see {self.prog} --help)")
        self.exit(2)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but unknown arguments are reported by the command they were given to."""
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            command = next((action.choices[getattr(args, action.dest)] for action in self._actions
                            if isinstance(action, argparse._SubParsersAction)
                            and getattr(args, action.dest, None)), self)
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return args


def one_line_warnings(prog: str):
    """A ``warnings.showwarning`` that prints ``<prog>: warning: <message>`` (no file, line or
    source text of ours: what the user needs is the message)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {' '.join(str(message).split())}", file=file or sys.stderr,
              flush=True)
    return show


def os_error_message(exc: OSError) -> str:
    """``'path': strerror`` for an OSError with a file name, else its own message."""
    if exc.filename is None or not exc.strerror:
        return str(exc)
    names = repr(os.fsdecode(exc.filename))
    if exc.filename2 is not None:
        names += f" -> {os.fsdecode(exc.filename2)!r}"
    return f"{names}: {exc.strerror}"


def is_user_os_error(exc: BaseException) -> bool:
    return isinstance(exc, USER_OS_ERRORS) or (isinstance(exc, OSError)
                                               and exc.errno in USER_ERRNOS)


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
    if facts["cuda"]:
        from .ops.cuda import build as cuda_build

        print(f"  cuda ext.     {cuda_build.status()}")
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
    from .bench import command

    return command.main(args)


def _build_ext(args: argparse.Namespace) -> int:
    from .ops.cuda import build

    try:
        arch = build.normalize_arch(args.arch or ("9.0" if args.report else build.default_arch()))
    except ValueError as exc:  # a bad --arch, or $TORCH_CUDA_ARCH_LIST without it
        raise UserError(f"--arch {args.arch!r}: {exc}" if args.arch else
                        f"$TORCH_CUDA_ARCH_LIST: {exc}") from None
    print(f"stylegan_fast: compiling the CUDA extension for {arch} (one extension, all ops; "
          f"a few minutes)...", flush=True)
    try:
        result = build.build(arch, force=args.force, verbose=args.verbose)
    except build.BuildError as exc:  # no CUDA torch, no nvcc/ninja, or the compiler failed
        raise UserError(str(exc)) from None
    how = "found in the cache" if result.cached else f"built in {result.seconds:.0f} s"
    print(f"{result.path}\n  {how}; log: {result.log or '-'}")
    report_arch = next((entry.removesuffix("+PTX") for entry in arch.split(";")
                        if entry.removesuffix("+PTX") in ("9.0", "9.0a")), None)
    if args.report and report_arch:  # the report's table has the ptxas columns
        return _report(build, report_arch, result)
    if result.kernels:
        width = max(len(k.name) for k in result.kernels)
        print(f"  {'kernel':<{width}}  arch    regs   smem  stack  spill st/ld")
        for k in result.kernels:
            print(f"  {k.name:<{width}}  {k.arch:<6} {k.registers:>5} {k.smem:>6} {k.stack:>6}"
                  f"  {k.spill_stores:>5}/{k.spill_loads}")
        spilling = [k for k in result.kernels if k.spill_stores or k.spill_loads]
        print(f"  {len(result.kernels)} kernels, {len(spilling)} with register spills")
    return _report(build, None, result) if args.report else 0


def _report(build, report_arch, result) -> int:
    """build-ext --report: check the sm_90 machine code of ``result``, built for ``report_arch``
    (9.0 or 9.0a; None: it has no sm_90 code, build for 9.0 first); 0 when every check passes."""
    from .ops.cuda import sass

    try:
        if report_arch is None:
            report_arch = "9.0"
            print("stylegan_fast: the report inspects sm_90 code: building for 9.0 as well...",
                  flush=True)
            result = build.build(report_arch)
            print(f"{result.path}\n  log: {result.log or '-'}")
        report = sass.report(result.path, result.log, report_arch)
    except (build.BuildError, sass.SassError) as exc:
        raise UserError(f"--report: {exc}") from None
    print(sass.format_report(report))
    return 0 if report.ok else 1


def _convert(args: argparse.Namespace) -> int:
    from .compat import stylegan1

    print(stylegan1.convert(args.src, args.dst, overwrite=args.force))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    doctor = commands.add_parser("doctor", help="what each backend needs and whether it is there")
    doctor.set_defaults(func=_doctor)
    bench = commands.add_parser("bench", help="time the ops per backend and print a table")
    from .bench.command import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=_bench)
    build_ext = commands.add_parser(
        "build-ext", help="compile the CUDA extension now (no GPU needed) and report its kernels")
    build_ext.add_argument("--arch", default=None,
                           help="CUDA arch(s), e.g. 9.0 or '8.0;9.0+PTX' (default: this GPU's, "
                                "else $TORCH_CUDA_ARCH_LIST, else 9.0; with --report: 9.0)")
    build_ext.add_argument("--force", action="store_true", help="rebuild even if cached")
    build_ext.add_argument("--verbose", action="store_true", help="more output in the build log")
    build_ext.add_argument(
        "--report", action="store_true",
        help="then check the sm_90 machine code (cuobjdump --dump-sass: the toolkit's, else "
             "the one in Triton's wheel) of every kernel: 128-bit global loads/stores on the "
             "vector path, no local memory (LDL/STL, ptxas spills), cluster barriers and "
             "distributed shared memory in cluster kernels; print a table, exit 1 if a check "
             "fails. Builds for 9.0 without --arch, and for 9.0 as well when --arch lacks it")
    build_ext.set_defaults(func=_build_ext)
    from .train import command as train_command

    train = commands.add_parser(
        "train", help="train StyleGAN (one process, or each process of a torchrun launch)")
    train_command.add_train_arguments(train)
    train.set_defaults(func=train_command.run_train)
    demo = commands.add_parser(
        "demo", help="a few minutes of training on real faces on the CPU: samples + checkpoint")
    train_command.add_demo_arguments(demo)
    demo.set_defaults(func=train_command.run_demo)
    convert = commands.add_parser(
        "convert", help="an official StyleGAN1 pickle (karras2019stylegan-*.pkl) -> a "
                        "checkpoint: G, D, G_ema (Gs); no TensorFlow, none of its code is run")
    convert.add_argument("src", help="NVIDIA's StyleGAN1 pickle")
    convert.add_argument("dst", help="the checkpoint to write (.pt), for generate, mix, "
                                     "interpolate, fid, bench --model --ckpt and train --resume")
    convert.add_argument("--force", action="store_true", help="replace an existing dst")
    convert.set_defaults(func=_convert)
    from .tools import commands as tool_commands

    tool_commands.add_commands(commands)  # generate, mix, interpolate, fid
    return parser


def main(argv=None) -> int:
    """Run a command: its exit status. A user error (:class:`UserError`, a missing or unwritable
    file, a full disk) is one line on stderr and status 2, Ctrl-C one line and 130; anything
    else is a bug and keeps its traceback. Usage errors exit (SystemExit 2) while parsing."""
    args = build_parser().parse_args(argv)
    prog = f"{PROG} {args.command}"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(prog)
            return args.func(args)
    except UserError as exc:
        print_error(prog, str(exc))
    except OSError as exc:
        if not is_user_os_error(exc):
            raise
        print_error(prog, os_error_message(exc))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
