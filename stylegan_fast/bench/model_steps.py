"""What the model benchmark runs on one backend: a StyleGAN1 training step, and generation.

The backends are those of :mod:`.baselines`: ``eager`` runs the models with every op on the
``eager`` backend (StyleGAN as one would write it in plain PyTorch), ``compile`` the same models
under ``torch.compile`` (G and D are compiled; D's R1 pass runs eagerly, because compiled graphs
do not support double backward), and any other name the models' ops on that backend.

:class:`TrainingStep`: one step on a fixed batch of random reals, without data loading. D step:
fakes from G without grad, logistic loss, R1 (gamma 10, every step) on the reals, Adam; G step:
non-saturating loss through the frozen D, Adam; then the G_ema update. Losses, EMA and Adam
settings come from :mod:`stylegan_fast.train`. Style mixing on, random noise. With lazy R1
(the case's ``r1_interval`` N > 1) one call runs N such steps, R1 on the first only and weighted
by N (:func:`stylegan_fast.train.loss.r1_weight`, as the trainer does); the other D steps score
the reals without it.
:class:`DiscriminatorR1Step`: D's share of R1 alone: D(reals), the penalty and the backward of
the reals' logistic loss plus the penalty (no fakes, no G, no optimizer step).
:class:`Generation`: ``G(z)`` in eval mode without grad (truncation psi 0.7, random noise).
``bfloat16`` runs the forward passes under ``torch.autocast``; weights and Adam state stay float32.
Each has ``models`` (its networks, for :func:`.conv_census.layer_kernel`) and ``check()``.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..train.ema import make_ema, update_ema
from ..train.loss import discriminator_loss, generator_loss, r1_penalty, r1_weight
from ..train.optim import make_adam
from ..train.schedule import ema_beta
from .baselines import backend_context, compiled
from .model_cases import MODEL_DTYPES, ModelCase
from .op_cases import DTYPES

R1_GAMMA = 10.0
LEARNING_RATE = 0.002
EMA_KIMG = 10.0
TRUNCATION_PSI = 0.7


def autocast_factory(case: ModelCase) -> Callable[[], contextlib.AbstractContextManager]:
    """A function returning a fresh autocast context for the case's dtype (float32: none)."""
    if case.dtype == "float32":
        return contextlib.nullcontext
    if case.dtype not in MODEL_DTYPES:
        raise ValueError(f"model benchmarks run {', '.join(MODEL_DTYPES)}, not {case.dtype}")
    return functools.partial(torch.autocast, torch.device(case.device).type,
                             dtype=DTYPES[case.dtype])


class _ModelRun:
    """What both cases share: the backend, autocast, latents and the (compiled) model runner."""

    def __init__(self, case: ModelCase, compiler: str, seed: int):
        self.case = case
        self.context = functools.partial(backend_context, case.backend)
        self.autocast = autocast_factory(case)
        self.compiler = compiler
        torch.manual_seed(seed)

    def runner(self, module: torch.nn.Module) -> torch.nn.Module:
        return compiled(module, self.compiler) if self.case.backend == "compile" else module

    def latents(self) -> torch.Tensor:
        return torch.randn(self.case.batch, self.case.networks.latent_dim, device=self.case.device)

    def random_reals(self, seed: int) -> torch.Tensor:
        """A fixed batch of "real" images, uniform in [-1, 1]."""
        case = self.case
        gen = torch.Generator(device=case.device).manual_seed(seed)
        return torch.rand(case.batch, 3, case.resolution, case.resolution, generator=gen,
                          device=case.device) * 2 - 1


class TrainingStep(_ModelRun):
    """Calling it runs one training step of G and D (with lazy R1: one R1 interval of steps; see
    the module docstring)."""

    def __init__(self, case: ModelCase, compiler: str = "inductor", seed: int = 0):
        super().__init__(case, compiler, seed)
        device, res = case.device, case.resolution
        self.G = case.networks.generator(res).to(device).train()
        self.D = case.networks.discriminator(res).to(device).train()
        self.G_ema = make_ema(self.G)
        self.opt_G, self.opt_D = (make_adam(net.parameters(), LEARNING_RATE)
                                  for net in (self.G, self.D))
        self.reals = self.random_reals(seed)
        self.G_run, self.D_run = self.runner(self.G), self.runner(self.D)
        self.models = (self.G, self.D)
        self.ema_beta = ema_beta(case.batch, EMA_KIMG)
        self.losses: Optional[torch.Tensor] = None  # [D loss, G loss] of the last step

    def __call__(self) -> None:
        """``case.steps_per_call`` training steps (one, or with lazy R1 one R1 interval)."""
        for step in range(self.case.steps_per_call):
            with self.context():
                d_loss = self._discriminator_step(r1_weight(R1_GAMMA, self.case.r1_interval,
                                                            step))
                g_loss = self._generator_step()
            update_ema(self.G_ema, self.G, self.ema_beta)
            self.losses = torch.stack([d_loss.detach(), g_loss.detach()])

    def _discriminator_step(self, r1_scale: float) -> torch.Tensor:
        with torch.no_grad(), self.autocast():
            fakes = self.G_run(self.latents())
        with self.autocast():
            fake_scores = self.D_run(fakes)
        if r1_scale:
            # The eager D: a compiled graph cannot be differentiated twice.
            real_scores, r1 = r1_penalty(self.D, self.reals, self.autocast())
            loss = (discriminator_loss(fake_scores, real_scores) + r1_scale * r1).mean()
        else:
            with self.autocast():
                real_scores = self.D_run(self.reals)
            loss = discriminator_loss(fake_scores, real_scores).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        return loss

    def _generator_step(self) -> torch.Tensor:
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                scores = self.D_run(self.G_run(self.latents()))
            loss = generator_loss(scores).mean()
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_G.step()
        finally:
            self.D.requires_grad_(True)
        return loss

    def check(self) -> None:
        if self.losses is None or not torch.isfinite(self.losses).all():
            raise FloatingPointError(f"{self.case.name}: losses {self.losses} are not finite")


class DiscriminatorR1Step(_ModelRun):
    """Calling it runs D's share of R1 (see the module docstring) and leaves D's gradients."""

    def __init__(self, case: ModelCase, compiler: str = "inductor", seed: int = 0):
        super().__init__(case, compiler, seed)
        self.D = case.networks.discriminator(case.resolution).to(case.device).train()
        self.models = (self.D,)
        self.reals = self.random_reals(seed)
        self.loss: Optional[torch.Tensor] = None

    def __call__(self) -> None:
        with self.context():
            # The eager D on every backend: a compiled graph cannot be differentiated twice.
            real_scores, r1 = r1_penalty(self.D, self.reals, self.autocast())
            reals_loss = F.softplus(-real_scores.float()).flatten()  # the D loss's real half
            loss = (reals_loss + R1_GAMMA / 2 * r1).mean()
            self.D.zero_grad(set_to_none=True)
            loss.backward()
        self.loss = loss.detach()

    def check(self) -> None:
        if self.loss is None or not torch.isfinite(self.loss):
            raise FloatingPointError(f"{self.case.name}: loss {self.loss} is not finite")


class Generation(_ModelRun):
    """Calling it generates one batch of images with G in eval mode."""

    def __init__(self, case: ModelCase, compiler: str = "inductor", seed: int = 0):
        super().__init__(case, compiler, seed)
        self.G = case.networks.generator(case.resolution).to(case.device).eval()
        self.G.requires_grad_(False)
        self.G_run = self.runner(self.G)
        self.models = (self.G,)
        self.output: Optional[torch.Tensor] = None

    def images(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        with self.context(), torch.no_grad(), self.autocast():
            return self.G_run(z, **kwargs)

    def __call__(self) -> None:
        self.output = self.images(self.latents(), truncation_psi=TRUNCATION_PSI)

    def check(self) -> None:
        if self.output is None or not torch.isfinite(self.output).all():
            raise FloatingPointError(f"{self.case.name}: the images are not finite")


STEPS = {"train_step": TrainingStep, "generate": Generation, "d_r1_step": DiscriminatorR1Step}


def prepare_step(case: ModelCase, compiler: str = "inductor"):
    """The step that runs ``case`` (by its ``op``), networks built and on the case's device."""
    return STEPS[case.op](case, compiler)
