"""``stylegan-fast train`` and ``stylegan-fast demo``: arguments -> :class:`TrainConfig` -> train.

With ``--resume``, every setting not given on the command line is taken from the checkpoint, so
``stylegan-fast train --resume RUN_FOLDER`` alone continues a run where it stopped.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from ..errors import UserError
from ..models.generator import STYLE_MIXING_MODES
from ..models.levels import channels_at, num_levels
from ..tools.commands import parse_device
from .config import AMP_MODES, TrainConfig, parse_schedule
from .schedule import Schedule

# The demo: 100 small real faces, a small network, progressive growing 8 -> 32 px; a few minutes
# on a 2-core CPU. Tuned to show faces soon: higher lr, no style mixing, light R1, short EMA.
# One CPU thread: its tensors are too small to gain from more, and several threads that wait on
# each other slow down many times over when anything else keeps the cores busy.
DEMO = dict(data="builtin:faces", out="demo-run", resolution=32, z_dim=128, w_dim=128,
            mapping_layers=4, channel_base=512, channel_max=32, kimg=12.0, start_resolution=8,
            stable_kimg=3.0, fade_kimg=3.0, batch=16, lr=0.002, style_mixing=0.0, r1_gamma=0.5,
            ema_kimg=0.5, snapshot_kimg=4.0, log_kimg=0.5, workers=0, keep_checkpoints=1,
            cpu_threads=1)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def schedule_argument(value_type: type):
    """An argparse type for ``RES=VALUE,...`` whose error message says what is wrong."""
    def parse(text: str) -> dict:
        try:
            return parse_schedule(text, value_type)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option defaults to None: 'not given' (then the checkpoint's or TrainConfig's)."""
    a = parser.add_argument
    a("--data", help="folder of images (png/jpg/webp, recursive), a .zip of them, or "
                     "builtin:faces")
    a("--out", help="run folder: checkpoints, samples, log.jsonl")
    a("--resolution", type=int, help="final image size, a power of two from 8 to 1024")
    a("--channels", type=int, choices=(1, 3), help="1 grayscale, 3 RGB (default: from the data)")
    a("--resume", help="checkpoint file, or a run folder (its newest checkpoint)")
    a("--kimg", type=float, help="train until this many thousand images (default 25000)")
    a("--batch", type=int, help="total images per step over all processes (default 32)")
    a("--batch-gpu", type=int, help="images per forward pass per process; smaller than "
                                    "batch/processes means gradient accumulation")
    a("--batch-schedule", type=schedule_argument(int),
      help="total batch per resolution, e.g. '8=256,16=128,32=64' (others: --batch)")
    a("--lr", type=float, help="Adam learning rate below the --lr-schedule (default 0.001)")
    a("--lr-schedule", type=schedule_argument(float),
      help="learning rate per resolution (default '128=0.0015,256=0.002,512=0.003,1024=0.003')")
    a("--channel-base", type=int, help="feature maps = min(base * 2 / resolution, max) "
                                       "(default 8192)")
    a("--channel-max", type=int, help="(default 512)")
    a("--z-dim", type=int, help="latent size (default 512)")
    a("--w-dim", type=int, help="intermediate latent size (default 512)")
    a("--mapping-layers", type=int, help="(default 8)")
    a("--style-mixing", type=float, help="style mixing probability (default 0.9)")
    a("--mixing", choices=STYLE_MIXING_MODES,
      help="draw the mixing decision and crossover layer per-sample (default) or per-batch, "
           "as NVIDIA's StyleGAN1 training (the default of converted official models)")
    a("--progressive", type=_bool, help="progressive growing (default true); false: train the "
                                        "full resolution from the start")
    a("--start-resolution", type=int, help="progressive growing starts here (default 8)")
    a("--stable-kimg", type=float, help="kimg at each resolution before the next fades in "
                                        "(default 600)")
    a("--fade-kimg", type=float, help="kimg of each fade-in (default 600)")
    a("--r1-gamma", type=float, help="R1 weight gamma (default 10)")
    a("--r1-interval", type=int, help="lazy R1: every N D steps, weighted by N (default 1)")
    a("--ema-kimg", type=float, help="half-life of G_ema in kimg (default 10)")
    a("--mirror", type=_bool, help="random left-right flips (default true)")
    a("--device", type=parse_device, help="auto (default), cpu, cuda, cuda:N")
    a("--backend", choices=("auto", "ref", "triton", "cuda"), help="fused-op backend")
    a("--amp", choices=AMP_MODES, help="mixed precision (default off); fp16 uses a gradient "
                                       "scaler; weights stay float32")
    a("--checkpoint-blocks", type=int, help="activation checkpointing of the N highest-resolution "
                                            "blocks of G and of D (default 0)")
    a("--cpu-threads", type=int, help="torch's CPU threads per process (default: torch's)")
    a("--workers", type=int, help="data loader processes per training process (default 2)")
    a("--seed", type=int, help="(default 0)")
    a("--snapshot-kimg", type=float, help="checkpoint + sample grid interval (default 50)")
    a("--snapshot-minutes", type=float,
      help="also a checkpoint + sample grid every M minutes of training (default 0: off)")
    a("--keep-checkpoints", type=int, help="newest checkpoints kept, 0: all (default 3)")
    a("--log-kimg", type=float, help="log.jsonl interval (default 1)")
    a("--sample-grid", type=int, help="images per sample grid (default 32)")
    a("--progress", type=_bool, help="progress bar (default true)")
    a("--tensorboard", action="store_const", const=True, help="also log to TensorBoard")


def config_from_args(args: argparse.Namespace, preset: dict) -> TrainConfig:
    """Given options over the checkpoint's config (when resuming) over ``preset``."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    stored = {}
    if args.resume is not None:
        from . import checkpoint

        # The file itself from now on: a run folder's damaged checkpoints are skipped once.
        resume, state = checkpoint.open_checkpoint(args.resume)
        args.resume, stored = str(resume), state["config"]
    values = {**preset, **stored, **given}
    missing = [name for name in ("data", "out", "resolution") if values.get(name) is None]
    if missing:
        converted = " (a converted official model has no data or run folder: give them to " \
            "fine-tune it)" if (
            stored and any(stored.get(m) is None for m in missing)) else ""
        raise ValueError("missing " + ", ".join(f"--{m}" for m in missing) + converted)
    return TrainConfig.from_dict(values)


def checked_config(args: argparse.Namespace, preset: dict) -> TrainConfig:
    """:func:`config_from_args`, then the checks the networks and the schedule will make, done
    now: any setting they reject is the user's mistake (:class:`UserError`, one line)."""
    try:
        config = config_from_args(args, preset)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        num_levels(config.resolution)
        channels_at(config.resolution, config.channel_base, config.channel_max)
    except ValueError as exc:
        raise UserError(f"--resolution {config.resolution}: {exc}") from None
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise UserError(f"--out {config.out!r} is a file, not a folder")
    try:
        Schedule(config.resolution, config.start_resolution, config.stable_kimg,
                 config.fade_kimg, config.batch, config.batch_gpu,
                 int(os.environ.get("WORLD_SIZE", "1")), config.lr, config.batch_schedule,
                 config.lr_schedule)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return config


def run_train(args: argparse.Namespace, preset: dict = None, banner: str = "") -> int:
    """Train; exit status 0, or 128 + the signal's number when SIGINT/SIGTERM stopped the run
    (after its checkpoint was written). User errors raise :class:`UserError` (``cli.main``
    prints them)."""
    from .loop import train

    config = checked_config(args, preset or {})
    if banner:
        print(banner, file=sys.stderr)
    summary = train(config, resume=args.resume)
    return 128 + summary["stopped_by"] if summary.get("stopped_by") else 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help=f"run folder (default {DEMO['out']})")
    parser.add_argument("--kimg", type=float, help=f"length (default {DEMO['kimg']})")
    parser.add_argument("--device", type=parse_device,
                        help="auto (default: the GPU if there is one), cpu, cuda")
    parser.add_argument("--seed", type=int, help="(default 0)")
    parser.add_argument("--resume", help="continue a demo run (its folder)")


def run_demo(args: argparse.Namespace) -> int:
    out = args.out or DEMO["out"]
    return run_train(args, DEMO, banner=(
        f"stylegan-fast demo: {DEMO['resolution']} px StyleGAN on the 100 real faces that "
        f"scikit-image ships, growing 8 -> 16 -> 32 px; {args.kimg or DEMO['kimg']:g} kimg. "
        f"Samples and checkpoints go to {out}/"))
