"""``stylegan-fast generate | mix | interpolate | fid``: arguments -> the functions of this
package. Each command prints what it wrote (or the FID) and returns 2 with a one-line error for
bad input (missing checkpoint, bad seed or styles spec, missing feature network).

``--ckpt`` takes our checkpoints and NVIDIA's official StyleGAN1 pickles. Truncation defaults to
the model's own: none for ours, NVIDIA's psi 0.7 / cutoff 8 for an official model (FID: none, as
NVIDIA's metrics). ``--trunc-cutoff`` spells both conventions: N (layers < N), ``all`` (every
layer) or ``none`` (no layer: what NVIDIA's ``truncation_cutoff=None`` means)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..nn.epilogue import NOISE_MODES
from .interpolation import SPACES

MODEL_DEFAULT = object()  # --trunc-cutoff not given: the model's own default


def parse_truncation_cutoff(text: str) -> Optional[int]:
    """``--trunc-cutoff``: N -> N, ``all`` -> None (every layer), ``none`` -> 0 (no layer)."""
    if text.lower() == "all":
        return None
    if text.lower() in ("none", "off"):
        return 0
    try:
        cutoff = int(text)
    except ValueError:
        cutoff = -1
    if cutoff < 0:
        raise argparse.ArgumentTypeError(f"expected a layer count >= 0, 'all' or 'none', got "
                                         f"{text!r}")
    return cutoff


def _common(parser: argparse.ArgumentParser, noise: bool = True) -> None:
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint file, a run folder (its newest checkpoint), or an "
                             "official StyleGAN1 .pkl")
    parser.add_argument("--trunc", type=float, default=None if noise else 1.0,
                        help="truncation psi: w = w_avg + psi (w - w_avg) (default: the model's, "
                             "1 (none) for ours, 0.7 for an official model)" if noise else
                        "truncation psi (default 1: none, as NVIDIA's metrics)")
    if noise:
        parser.add_argument("--trunc-cutoff", type=parse_truncation_cutoff, default=MODEL_DEFAULT,
                            help="truncate layers < N; 'all': every layer; 'none': no layer "
                                 "(NVIDIA's truncation_cutoff=None) (default: the model's, 8)")
        parser.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                            help="const (default: reproducible), random or none")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")


def _run(args: argparse.Namespace, work) -> int:
    from ..train.data import DatasetError
    from .fid_metric import FeatureNetworkError
    from .interpolation import VideoBackendError

    try:
        print(work())
    except (FileNotFoundError, ValueError, DatasetError, FeatureNetworkError,
            VideoBackendError) as exc:
        print(f"stylegan-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _generator(args: argparse.Namespace) -> tuple:
    """(the loaded generator, psi, cutoff): the flags, or where not given the model's
    defaults."""
    from .loading import load_generator

    trained = load_generator(args.ckpt, args.device)
    psi, cutoff = trained.truncation
    return (trained, psi if args.trunc is None else args.trunc,
            cutoff if args.trunc_cutoff is MODEL_DEFAULT else args.trunc_cutoff)


def run_generate(args: argparse.Namespace) -> int:
    from .generation import generate

    def work() -> str:
        trained, psi, cutoff = _generator(args)
        return "\n".join(str(p) for p in generate(trained, args.seeds, args.out, psi, cutoff,
                                                  args.noise_mode))
    return _run(args, work)


def run_mix(args: argparse.Namespace) -> int:
    from .mixing import mix

    def work() -> str:
        trained, psi, cutoff = _generator(args)
        return mix(trained, args.rows, args.cols, args.out, args.styles, psi, cutoff,
                   args.noise_mode)
    return _run(args, work)


def run_interpolate(args: argparse.Namespace) -> int:
    from .interpolation import interpolate

    def work() -> str:
        trained, psi, cutoff = _generator(args)
        return interpolate(trained, args.seeds, args.out, args.frames, args.space, psi, cutoff,
                           args.noise_mode, args.fps)
    return _run(args, work)


def run_fid(args: argparse.Namespace) -> int:
    from .fid_metric import fid

    def compute() -> str:
        value = fid(args.ckpt, args.data, args.num, args.inception, args.batch, args.trunc,
                    args.cache, args.device)
        return f"fid {value:.4f}"

    return _run(args, compute)


def add_commands(commands) -> None:
    """Add generate, mix, interpolate and fid to the ``stylegan-fast`` subparsers."""
    generate = commands.add_parser("generate", help="one PNG per seed from a checkpoint's G_ema")
    _common(generate)
    generate.add_argument("--seeds", required=True, help="e.g. 0-7, 0,3,5 or 1-3,9")
    generate.add_argument("--out", required=True, help="folder for seed<NNNN>.png")
    generate.set_defaults(func=run_generate)

    mix = commands.add_parser("mix", help="style-mixing figure: row styles over column images")
    _common(mix)
    mix.add_argument("--rows", required=True, help="row seeds: their styles at --styles")
    mix.add_argument("--cols", required=True, help="column seeds: the other layers' styles")
    mix.add_argument("--styles", default="coarse",
                     help="layers taken from the row: coarse (0-3), middle (4-7), fine (8+) or "
                          "indices such as 0-3 (default coarse)")
    mix.add_argument("--out", required=True, help="PNG file")
    mix.set_defaults(func=run_mix)

    interpolate = commands.add_parser(
        "interpolate", help="a looping GIF/MP4 that morphs through the seeds' images")
    _common(interpolate)
    interpolate.add_argument("--seeds", required=True, help="at least 2, e.g. 0,1,2")
    interpolate.add_argument("--frames", type=int, default=16,
                             help="frames from each seed to the next (default 16)")
    interpolate.add_argument("--space", choices=SPACES, default="z",
                             help="z: slerp of the latents (default); w: lerp of mapped ws")
    interpolate.add_argument("--fps", type=float, default=20, help="(default 20)")
    interpolate.add_argument("--out", required=True,
                             help="FILE.gif, or FILE.mp4 (needs imageio + imageio-ffmpeg)")
    interpolate.set_defaults(func=run_interpolate)

    fid = commands.add_parser("fid", help="FID of G_ema against a dataset (Inception features)")
    _common(fid, noise=False)
    fid.add_argument("--data", required=True, help="folder, .zip or builtin:faces")
    fid.add_argument("--num", type=int, default=50000,
                     help="generated images, and real ones at most (default 50000)")
    fid.add_argument("--inception", default=None,
                     help="feature network as a TorchScript file (default: the standard "
                          "inception-2015-12-05.pt from the cache, downloaded if possible)")
    fid.add_argument("--batch", type=int, default=32, help="(default 32)")
    fid.add_argument("--cache", default=None, help="folder for the Inception file and dataset "
                                                   "statistics (default "
                                                   "~/.cache/stylegan_fast/metrics)")
    fid.set_defaults(func=run_fid)
