"""The training loop: StyleGAN1 with R1, G EMA, progressive growing, AMP, accumulation, DDP.

Each step, on every rank, for ``accumulation`` forward passes of ``batch_gpu`` images:

1. D step: fakes ``G(z)`` (no grad), D loss ``softplus(D(fake)) + softplus(-D(real))`` plus the
   R1 penalty on the reals (:mod:`.loss`); gradients averaged over passes and ranks; Adam step.
2. G step: fresh z, G loss ``softplus(-D(G(z)))`` (D frozen); averaged; Adam step.
3. G_ema follows G (:mod:`.ema`); the image counter grows by the total batch.

Adam (betas 0, 0.99, eps 1e-8; fused: :mod:`.optim`) restarts, as in ProGAN/StyleGAN1, whenever
the image resolution changes (a new level starts to fade in). Networks and optimizer states stay
float32; AMP runs the forward passes under ``torch.autocast`` (fp16 with a gradient scaler per
network). A step whose loss (on any rank) or gradient is not finite is skipped.

A step reads no value from the device: losses, R1 and the skipped-step flags add up in a
:class:`~.monitor.Tally` on the device, read when a log record is written, when the progress bar
refreshes its statistics (about once a second) and before a checkpoint; skipped steps are warned
about then, with their count. Log records hold the means since the previous record.
"""
from __future__ import annotations

import math
import shlex
import signal
import sys
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import __version__
from ..errors import UserError
from ..models import Discriminator, Generator
from ..ops import use_backend
from . import checkpoint, distributed, interrupt, rng
from .config import ARCHITECTURE, TrainConfig
from .data import batches, mirror, open_dataset, reals_at
from .ema import make_ema, update_ema
from .images import save_grid
from .loss import discriminator_loss, generator_loss, r1_penalty, r1_weight
from .memory import checkpoint_top_blocks
from .monitor import Monitor, Tally
from .optim import load_optimizer, make_adam, step_unless_non_finite
from .schedule import Phase, Schedule, ema_beta


class SnapshotError(UserError):
    """The final checkpoint could not be written (disk full, no permission)."""


__all__ = ["SnapshotError", "Trainer", "train"]
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MIN_GRID_SIZE = 64  # px per image in sample grids, so that small runs are visible
LOGGED_MEANS = ("loss_D", "loss_G", "r1")  # tally entries logged as means (besides skipped_*)


def _architecture_mismatch(config: TrainConfig, stored: dict) -> list[str]:
    return [f"{key}: {stored.get(key)!r} in the checkpoint, {getattr(config, key)!r} now"
            for key in ARCHITECTURE if stored.get(key) != getattr(config, key)]


class Trainer:
    """One rank's training state; :meth:`run` trains until ``config.kimg``."""

    def __init__(self, config: TrainConfig, world: distributed.World,
                 resume: Optional[dict] = None):
        self.config, self.world, self.device = config, world, world.device
        c = config
        rng.seed_everything(c.seed)  # identical networks on every rank
        self.dataset = open_dataset(c.data, c.resolution, c.channels)
        c.channels = self.dataset.channels
        if resume is not None:
            mismatch = _architecture_mismatch(c, resume["config"])
            if mismatch:
                raise UserError("the checkpoint was trained with other networks: "
                                 + "; ".join(mismatch))
        self.G = Generator(c.resolution, z_dim=c.z_dim, w_dim=c.w_dim, img_channels=c.channels,
                           channel_base=c.channel_base, channel_max=c.channel_max,
                           mapping_layers=c.mapping_layers, style_mixing_prob=c.style_mixing,
                           progressive=c.progressive,
                           style_mixing_mode=c.mixing).to(self.device).train()
        self.D = Discriminator(c.resolution, img_channels=c.channels, channel_base=c.channel_base,
                               channel_max=c.channel_max,
                               progressive=c.progressive).to(self.device).train()
        distributed.broadcast_module(self.G)
        distributed.broadcast_module(self.D)
        self.G_ema = make_ema(self.G)
        self.checkpointed_blocks = checkpoint_top_blocks(self.G, self.D, c.checkpoint_blocks)
        self.opt_G = make_adam(self.G.parameters(), c.lr)
        self.opt_D = make_adam(self.D.parameters(), c.lr)
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=c.amp == "fp16")
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=c.amp == "fp16")
        self.schedule = Schedule(c.resolution, c.start_resolution, c.stable_kimg, c.fade_kimg,
                                 c.batch, c.batch_gpu, world.size, c.lr, c.batch_schedule,
                                 c.lr_schedule)
        self.sample_z = torch.randn(c.sample_grid, c.z_dim,
                                    generator=torch.Generator().manual_seed(c.seed))
        self.nimg = self.step = self.skipped_steps = 0
        self.elapsed = 0.0
        self.tally = Tally()  # losses, R1 and skipped-step flags, on the device until read
        self.read_nimg = 0  # the image counter when the tally was last read
        self.opt_resolution: Optional[int] = None  # Adam restarts when the resolution changes
        self.loader, self.loader_batch_gpu = None, None
        # A fine-tuned official model keeps its provenance and NVIDIA's truncation defaults.
        self.official = resume.get("official") if resume is not None else None
        if resume is not None:
            self._load(resume)
        else:
            rng.seed_everything(rng.derived_seed(c.seed, world.rank))  # own noise per rank

    # ---- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resumed run needs (collective: every rank must call it)."""
        self._read_tally()  # the count of skipped steps
        return {
            "config": self.config.to_dict(),
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler_G": self.scaler_G.state_dict(), "scaler_D": self.scaler_D.state_dict(),
            "progress": {"nimg": self.nimg, "step": self.step, "elapsed_s": self.elapsed,
                         "skipped_steps": self.skipped_steps,
                         "opt_resolution": self.opt_resolution,
                         "lod": self.schedule.at(self.nimg).lod},
            "rng": distributed.gather_objects(rng.capture()),
            "sample_z": self.sample_z,
            "versions": {"stylegan_fast": __version__, "torch": str(torch.__version__)},
            **({"official": self.official} if self.official else {}),
        }

    def _load(self, state: dict) -> None:
        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("opt_G", "opt_D"):  # plain Adam's state (older checkpoints) or fused's
            load_optimizer(getattr(self, name), state[name])
        for name in ("scaler_G", "scaler_D"):
            if state[name]:  # empty from a run without fp16: keep the fresh scaler
                getattr(self, name).load_state_dict(state[name])
        progress = state["progress"]
        self.nimg, self.step = progress["nimg"], progress["step"]
        self.elapsed, self.skipped_steps = progress["elapsed_s"], progress["skipped_steps"]
        self.opt_resolution = progress["opt_resolution"]
        self.sample_z = state["sample_z"]
        if len(state["rng"]) == self.world.size:
            rng.restore(state["rng"][self.world.rank])
        elif not state["rng"]:  # a converted official model: no random state to continue
            rng.seed_everything(rng.derived_seed(self.config.seed, self.world.rank, self.nimg))
        else:
            warnings.warn(f"the checkpoint holds random states for {len(state['rng'])} "
                          f"process(es), this run has {self.world.size}: the run continues with "
                          f"fresh random streams (not bit-identical to an uninterrupted one)")
            rng.seed_everything(rng.derived_seed(self.config.seed, self.world.rank, self.nimg))

    # ---- one step --------------------------------------------------------------------------
    def autocast(self) -> AbstractContextManager:
        if self.config.amp == "off":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.config.amp])

    def _next_reals(self, phase: Phase) -> torch.Tensor:
        if self.loader_batch_gpu != phase.batch_gpu:
            self.loader = batches(self.dataset, phase.batch_gpu, self.world.rank,
                                  self.world.size, self.config.seed,
                                  self.nimg // self.world.size, self.config.workers,
                                  pin_memory=self.device.type == "cuda")
            self.loader_batch_gpu = phase.batch_gpu
        images = next(self.loader).to(self.device, non_blocking=True).float() / 127.5 - 1
        if self.config.mirror:
            images = mirror(images)
        return reals_at(images, phase.resolution, phase.lod)

    def _latents(self, phase: Phase) -> torch.Tensor:
        return torch.randn(phase.batch_gpu, self.config.z_dim, device=self.device)

    def _d_loss(self, reals: torch.Tensor, phase: Phase, r1_scale: float) -> torch.Tensor:
        with torch.no_grad(), self.autocast():
            fakes = self.G(self._latents(phase), lod=phase.lod)
        with self.autocast():
            fake_scores = self.D(fakes, lod=phase.lod)
        if r1_scale:
            loss_scale = (self.scaler_D.scale(torch.ones((), device=self.device))
                          if self.scaler_D.is_enabled() else 1.0)  # fp16: a device scalar
            real_scores, r1 = r1_penalty(lambda x: self.D(x, lod=phase.lod), reals,
                                         self.autocast(), loss_scale)
            self.tally.add("r1", r1.mean())
            return discriminator_loss(fake_scores, real_scores) + r1_scale * r1
        with self.autocast():
            real_scores = self.D(reals, lod=phase.lod)
        return discriminator_loss(fake_scores, real_scores)

    def _g_loss(self, phase: Phase) -> torch.Tensor:
        with self.autocast():
            fake_scores = self.D(self.G(self._latents(phase), lod=phase.lod), lod=phase.lod)
        return generator_loss(fake_scores)

    def _optimize(self, name: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, losses: list[Callable[[], torch.Tensor]]) -> None:
        """Accumulate the gradients of the mean of ``losses`` over passes and ranks, then step
        unless that loss or a gradient is not finite (decided on the device); the loss and the
        skipped flag go to the tally."""
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for compute in losses:
            loss = compute().mean() / len(losses)
            scaler.scale(loss).backward()
            total += loss.detach()
        distributed.average_gradients(module.parameters(), self.world)
        mean_loss = distributed.sum_over_ranks(total) / self.world.size
        self.tally.add(f"skipped_{name}", step_unless_non_finite(optimizer, scaler, mean_loss))
        self.tally.add(f"loss_{name}", mean_loss)

    def _read_tally(self) -> None:
        """Read the tally (one transfer, if anything was added since the last read) and count
        the optimizer steps skipped since then, with a warning."""
        added = self.tally.read()
        for name, scaler in (("D", self.scaler_D), ("G", self.scaler_G)):
            skipped = round(added.get(f"skipped_{name}", 0.0))
            if not skipped:
                continue
            self.skipped_steps += skipped
            if self.world.is_main:
                lowered = (f"; fp16 loss scale lowered, now {scaler.get_scale():g}"
                           if scaler.is_enabled() else "")
                warnings.warn(f"{skipped} {name} step{'s' if skipped > 1 else ''} skipped "
                              f"between {self.read_nimg} and {self.nimg} images (step "
                              f"{self.step}): non-finite {name} loss or gradient{lowered}")
        self.read_nimg = self.nimg

    def train_step(self, phase: Phase) -> None:
        if self.opt_resolution != phase.resolution:
            for optimizer in (self.opt_G, self.opt_D):
                optimizer.state.clear()
            self.opt_resolution = phase.resolution
        for optimizer in (self.opt_G, self.opt_D):
            for group in optimizer.param_groups:
                group["lr"] = phase.lr
        r1_scale = r1_weight(self.config.r1_gamma, self.config.r1_interval, self.step)
        reals = [self._next_reals(phase) for _ in range(phase.accumulation)]
        self._optimize("D", self.D, self.opt_D, self.scaler_D,
                       [lambda x=x: self._d_loss(x, phase, r1_scale) for x in reals])
        self.D.requires_grad_(False)
        self._optimize("G", self.G, self.opt_G, self.scaler_G,
                       [lambda: self._g_loss(phase)] * phase.accumulation)
        self.D.requires_grad_(True)
        update_ema(self.G_ema, self.G, ema_beta(phase.batch, self.config.ema_kimg))
        self.nimg += phase.batch
        self.step += 1

    # ---- outputs ---------------------------------------------------------------------------
    @torch.no_grad()
    def samples(self, lod: float) -> torch.Tensor:
        """G_ema's images of the fixed latents (constant noise: draws no random numbers)."""
        return self.G_ema(self.sample_z.to(self.device), noise_mode="const", lod=lod)

    def snapshot(self, final: bool) -> tuple[Optional[Path], Optional[Path]]:
        """Checkpoint and sample grid, written by rank 0 (collective). A write that fails (disk
        full, no permission) leaves the previous checkpoint intact: a periodic snapshot warns and
        training goes on; the ``final`` one (end of the run, or stopping on a signal) raises
        :class:`SnapshotError`."""
        state = self.state()
        if not self.world.is_main:
            return None, None
        c = self.config
        try:
            path = checkpoint.save(state, c.out, self.nimg, c.keep_checkpoints)
            grid = save_grid(self.samples(state["progress"]["lod"]),
                             Path(c.out) / f"samples-{self.nimg:09d}.png", self._grid_columns(),
                             max(c.resolution, MIN_GRID_SIZE))
        except OSError as exc:
            previous = checkpoint.latest_checkpoint(c.out)
            message = (f"could not write the snapshot at {self.nimg / 1000:g} kimg: "
                       f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}; "
                       + (f"the previous checkpoint {str(previous)!r} is intact" if previous
                          else "no checkpoint has been written yet"))
            if final:
                raise SnapshotError(message) from None
            warnings.warn(message + "; training goes on and tries again at the next snapshot")
            return None, None
        return path, grid

    def _grid_columns(self) -> int:
        return max(1, round(math.sqrt(self.config.sample_grid * 2)))

    # ---- the run ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until ``config.kimg`` or until SIGINT/SIGTERM (then: finish the step, snapshot,
        stop; ``summary['stopped_by']`` is the signal's number)."""
        c, out = self.config, Path(self.config.out)
        total_nimg = round(c.kimg * 1000)
        monitor = None
        if self.world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            monitor = Monitor(out, c.kimg, self.nimg / 1000, c.progress, c.tensorboard)
            monitor.record({"event": "start", "nimg": self.nimg, "world_size": self.world.size,
                            "device": str(self.device), "images": len(self.dataset),
                            "skipped_files": len(self.dataset.skipped),
                            "checkpointed_blocks": self.checkpointed_blocks,
                            "config": c.to_dict()})
            if self.nimg == 0:
                reals = torch.stack([self.dataset[i] for i in
                                     range(min(c.sample_grid, len(self.dataset)))])
                save_grid(reals, out / "reals.png", self._grid_columns(),
                          max(c.resolution, MIN_GRID_SIZE))
        snapshot_every = max(1, round(c.snapshot_kimg * 1000))
        snapshot_seconds = c.snapshot_minutes * 60 if c.snapshot_minutes else math.inf
        log_every = max(1, round(c.log_kimg * 1000))
        last_log_nimg, last_log_time = self.nimg, time.perf_counter()
        started, start_elapsed = time.perf_counter(), self.elapsed
        last_snapshot, snapshot_asked = time.monotonic(), False
        path = grid = stopped_by = None
        self.read_nimg = self.nimg
        with (interrupt.StopRequests(announce=self.world.is_main) as stops,
              interrupt.Agreement(self.world) as agree):
            while self.nimg < total_nimg and stopped_by is None:
                phase = self.schedule.at(self.nimg)
                before = self.nimg
                self.train_step(phase)
                self.elapsed = start_elapsed + time.perf_counter() - started
                done = self.nimg >= total_nimg
                # rank 0 asks once per period: the answer may come a step later
                ask = not snapshot_asked and time.monotonic() - last_snapshot >= snapshot_seconds
                snapshot_asked |= ask
                stopped_by, time_due = agree(stops.signum, ask)
                stopped_by = None if done else stopped_by  # a signal on the last step: done
                record = None
                if done or stopped_by or self.nimg // log_every > before // log_every:
                    now = time.perf_counter()
                    record = self._log_record(phase, (self.nimg - last_log_nimg)
                                              / (now - last_log_time))
                    if monitor is not None:
                        monitor.record(record)
                    last_log_nimg, last_log_time = self.nimg, now
                if monitor is not None:
                    self._show_progress(monitor, phase, record)
                if (done or stopped_by or time_due
                        or self.nimg // snapshot_every > before // snapshot_every):
                    written = self.snapshot(final=bool(done or stopped_by))
                    last_snapshot, snapshot_asked = time.monotonic(), False
                    if written[0] is not None:  # rank 0, and the write worked
                        path, grid = written
                        if monitor is not None:
                            monitor.record({"event": "snapshot", "nimg": self.nimg,
                                            "checkpoint": str(path), "samples": str(grid)})
        self._read_tally()
        summary = {"nimg": self.nimg, "kimg": self.nimg / 1000, "steps": self.step,
                   "skipped_steps": self.skipped_steps, "seconds": round(self.elapsed, 2),
                   "checkpoint": str(path) if path else None,
                   "samples": str(grid) if grid else None, "stopped_by": stopped_by}
        if monitor is not None:
            monitor.record({"event": "stopped" if stopped_by else "done", **summary})
            monitor.close()
            print(self._farewell(summary), file=sys.stderr)
        return summary

    def _farewell(self, summary: dict) -> str:
        kimg, path = summary["kimg"], summary["checkpoint"]
        if summary["stopped_by"]:
            name = signal.Signals(summary["stopped_by"]).name
            return (f"stopped by {name} at {kimg:.3f} kimg; checkpoint {path}; continue with: "
                    f"stylegan-fast train --resume {shlex.quote(self.config.out)}")
        if path:
            return (f"done: {kimg:.2f} kimg in {self.elapsed:.0f} s; checkpoint {path}; "
                    f"samples {summary['samples']}")
        return f"nothing to do: the checkpoint is already at {kimg:.2f} kimg"

    def _log_record(self, phase: Phase, images_per_s: float) -> dict:
        """The log line of this step: losses and R1 are means since the previous record (read
        from the tally, which restarts; every rank reads it, to count skipped steps)."""
        self._read_tally()
        record = {"nimg": self.nimg, "kimg": round(self.nimg / 1000, 3), "step": self.step,
                  "lod": round(phase.lod, 4), "resolution": phase.resolution,
                  "batch": phase.batch, "lr": phase.lr, **self.tally.means(LOGGED_MEANS),
                  "images_per_s": round(images_per_s, 2), "elapsed_s": round(self.elapsed, 2),
                  "skipped_steps": self.skipped_steps}
        self.tally.restart()
        if self.device.type == "cuda":
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
        return record

    def _show_progress(self, monitor: Monitor, phase: Phase, record: Optional[dict]) -> None:
        """Advance the bar; its losses are the log ``record``'s when one was just written, else
        the means since the last record, read about once a second (:meth:`Monitor.stats_due`)."""
        if record is None and monitor.stats_due():
            self._read_tally()
            record = self.tally.means(LOGGED_MEANS)
        read = None if record is None else {
            short: f"{record[name]:.3f}" for short, name in (("G", "loss_G"), ("D", "loss_D"))
            if name in record}
        monitor.advance(self.nimg / 1000, {"lod": f"{phase.lod:.2f}", "px": phase.resolution},
                        read)


def train(config: TrainConfig, resume: Optional[str] = None) -> dict:
    """Train (or continue a checkpoint, ``resume``: a file or a run folder) until
    ``config.kimg``; returns the summary. Works alone or in every process of a ``torchrun``.

    Sets cuDNN to deterministic algorithms (``--seed`` reproducibility) and, while it runs,
    torch's CPU threads to ``config.cpu_threads``."""
    owns_process_group = not torch.distributed.is_initialized()
    threads = torch.get_num_threads()
    world = distributed.init(config.device)
    try:
        state = checkpoint.load(resume) if resume is not None else None
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        with use_backend(config.backend):
            return Trainer(config, world, state).run()
    finally:
        torch.set_num_threads(threads)
        if owns_process_group:
            distributed.shutdown()
