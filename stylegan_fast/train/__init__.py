"""Training StyleGAN1: data, losses, schedules, checkpoints, the loop and its commands.

``train(TrainConfig(data=..., out=..., resolution=...))`` runs in one process or in each process
of a ``torchrun`` launch; ``stylegan-fast train`` / ``stylegan-fast demo`` are its commands.
"""
from .config import TrainConfig
from .loop import Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
