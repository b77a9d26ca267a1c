"""``stylegan-fast generate | mix | interpolate | fid``: arguments -> the functions of this
package. Each command prints what it wrote (or the FID). Bad input is a usage error while the
arguments are parsed where it can be (seeds, numbers, device, output path), else a
:class:`~stylegan_fast.errors.UserError` (missing checkpoint, styles the model lacks, missing
feature network, bad dataset) that ``stylegan-fast`` prints as one line, exit status 2.

``--ckpt`` takes our checkpoints and NVIDIA's official StyleGAN1 pickles. Truncation defaults to
the model's own: none for ours, NVIDIA's psi 0.7 / cutoff 8 for an official model (FID: none, as
NVIDIA's metrics). ``--trunc-cutoff`` spells both conventions: N (layers < N), ``all`` (every
layer) or ``none`` (no layer: what NVIDIA's ``truncation_cutoff=None`` means)."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Optional

import torch

from ..errors import UserError
from ..nn.epilogue import NOISE_MODES
from .interpolation import FORMATS, SPACES
from .seeds import SpecError, parse_seeds

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


def parse_device(text: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N, where that device exists (else a usage
    error)."""
    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: expected auto, cpu, cuda or "
                                         f"cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}, but no CUDA GPU is visible here (use "
                                             f"cpu)")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}, but there are only {count} GPU(s) "
                                             f"(cuda:0-{count - 1})")
    return text


def number(kind=float, minimum=None, positive: bool = False):
    """An argparse type: a finite ``kind`` (int or float), > 0 if ``positive``, >= ``minimum``
    if given."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or (positive and value <= 0) or (
                minimum is not None and value < minimum):
            bound = ("> 0" if positive else "" if minimum is None else f">= {minimum}")
            noun = "an integer" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(f"expected {noun}{' ' if bound else ''}{bound}, "
                                             f"got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def seed_spec(text: str) -> str:
    """An argparse type: a seed spec that parses (kept as text: the tools parse it again)."""
    try:
        parse_seeds(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _check_output(path: str, flag: str, folder: bool, suffixes=None) -> None:
    """Before any work: ``path`` (a folder, or a file with one of ``suffixes``) can be made."""
    out = Path(path)
    if folder and out.exists() and not out.is_dir():
        raise UserError(f"{flag} {path!r} is a file, not a folder")
    if not folder:
        if out.is_dir():
            raise UserError(f"{flag} {path!r} is a folder: name the file to write in it")
        if suffixes and out.suffix.lower() not in suffixes:
            shown = ", ".join(suffixes[:6]) + (", ..." if len(suffixes) > 6 else "")
            raise UserError(f"{flag} {path!r}: the suffix must be one of {shown}")
    parent = out.absolute() if folder else out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path!r}: cannot write in {str(parent)!r} (permission denied)")


def image_suffixes() -> tuple:
    """The file suffixes Pillow can write (.png first)."""
    from PIL import Image

    Image.init()
    found = sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)
    common = [ext for ext in (".png", ".jpg", ".jpeg", ".webp") if ext in found]
    return (*common, *[ext for ext in found if ext not in common])


def _common(parser: argparse.ArgumentParser, noise: bool = True) -> None:
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint file, a run folder (its newest checkpoint), or an "
                             "official StyleGAN1 .pkl")
    parser.add_argument("--trunc", type=number(float), default=None if noise else 1.0,
                        help="truncation psi: w = w_avg + psi (w - w_avg) (default: the model's, "
                             "1 (none) for ours, 0.7 for an official model)" if noise else
                        "truncation psi (default 1: none, as NVIDIA's metrics)")
    if noise:
        parser.add_argument("--trunc-cutoff", type=parse_truncation_cutoff, default=MODEL_DEFAULT,
                            help="truncate layers < N; 'all': every layer; 'none': no layer "
                                 "(NVIDIA's truncation_cutoff=None) (default: the model's, 8)")
        parser.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                            help="const (default: reproducible), random or none")
    parser.add_argument("--device", type=parse_device, default="auto",
                        help="auto (default), cpu, cuda, cuda:N")


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

    _check_output(args.out, "--out", folder=True)
    trained, psi, cutoff = _generator(args)
    for path in generate(trained, args.seeds, args.out, psi, cutoff, args.noise_mode):
        print(path)
    return 0


def run_mix(args: argparse.Namespace) -> int:
    from .mixing import mix

    _check_output(args.out, "--out", folder=False, suffixes=image_suffixes())
    trained, psi, cutoff = _generator(args)
    print(mix(trained, args.rows, args.cols, args.out, args.styles, psi, cutoff, args.noise_mode))
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    from .interpolation import check_video_path, interpolate

    if len(parse_seeds(args.seeds)) < 2:
        raise UserError(f"--seeds {args.seeds!r}: an interpolation needs at least 2 seeds")
    _check_output(args.out, "--out", folder=False, suffixes=FORMATS)
    check_video_path(args.out)  # .mp4: is there an ffmpeg backend?
    trained, psi, cutoff = _generator(args)
    print(interpolate(trained, args.seeds, args.out, args.frames, args.space, psi, cutoff,
                      args.noise_mode, args.fps))
    return 0


def run_fid(args: argparse.Namespace) -> int:
    from .fid_metric import fid

    if args.cache is not None:
        _check_output(args.cache, "--cache", folder=True)
    value = fid(args.ckpt, args.data, args.num, args.inception, args.batch, args.trunc,
                args.cache, args.device)
    print(f"fid {value:.4f}")
    return 0


def add_commands(commands) -> None:
    """Add generate, mix, interpolate and fid to the ``stylegan-fast`` subparsers."""
    generate = commands.add_parser("generate", help="one PNG per seed from a checkpoint's G_ema")
    _common(generate)
    generate.add_argument("--seeds", required=True, type=seed_spec, help="e.g. 0-7, 0,3,5 or 1-3,9")
    generate.add_argument("--out", required=True, help="folder for seed<NNNN>.png")
    generate.set_defaults(func=run_generate)

    mix = commands.add_parser("mix", help="style-mixing figure: row styles over column images")
    _common(mix)
    mix.add_argument("--rows", required=True, type=seed_spec,
                     help="row seeds: their styles at --styles")
    mix.add_argument("--cols", required=True, type=seed_spec,
                     help="column seeds: the other layers' styles")
    mix.add_argument("--styles", default="coarse",
                     help="layers taken from the row: coarse (0-3), middle (4-7), fine (8+) or "
                          "indices such as 0-3 (default coarse)")
    mix.add_argument("--out", required=True, help="PNG file")
    mix.set_defaults(func=run_mix)

    interpolate = commands.add_parser(
        "interpolate", help="a looping GIF/MP4 that morphs through the seeds' images")
    _common(interpolate)
    interpolate.add_argument("--seeds", required=True, type=seed_spec,
                             help="at least 2, e.g. 0,1,2")
    interpolate.add_argument("--frames", type=number(int, positive=True), default=16,
                             help="frames from each seed to the next (default 16)")
    interpolate.add_argument("--space", choices=SPACES, default="z",
                             help="z: slerp of the latents (default); w: lerp of mapped ws")
    interpolate.add_argument("--fps", type=number(float, positive=True), default=20,
                             help="(default 20)")
    interpolate.add_argument("--out", required=True,
                             help="FILE.gif, or FILE.mp4 (needs imageio + imageio-ffmpeg)")
    interpolate.set_defaults(func=run_interpolate)

    fid = commands.add_parser("fid", help="FID of G_ema against a dataset (Inception features)")
    _common(fid, noise=False)
    fid.add_argument("--data", required=True, help="folder, .zip or builtin:faces")
    fid.add_argument("--num", type=number(int, minimum=2), default=50000,
                     help="generated images, and real ones at most (default 50000)")
    fid.add_argument("--inception", default=None,
                     help="feature network as a TorchScript file (default: the standard "
                          "inception-2015-12-05.pt from the cache, downloaded if possible)")
    fid.add_argument("--batch", type=number(int, positive=True), default=32, help="(default 32)")
    fid.add_argument("--cache", default=None, help="folder for the Inception file and dataset "
                                                   "statistics (default "
                                                   "~/.cache/stylegan_fast/metrics)")
    fid.set_defaults(func=run_fid)
