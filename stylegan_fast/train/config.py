"""The training run's settings, stored in every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional

from ..models.generator import STYLE_MIXING_MODES
from .schedule import DEFAULT_LR_SCHEDULE

AMP_MODES = ("off", "bf16", "fp16")
# Settings that define the networks' shapes: a resumed run must keep them.
ARCHITECTURE = ("resolution", "channels", "z_dim", "w_dim", "mapping_layers", "channel_base",
                "channel_max", "progressive")


@dataclass
class TrainConfig:
    data: str
    out: str
    resolution: int
    channels: Optional[int] = None          # None: from the data (1 for grayscale, else 3)
    # networks (StyleGAN1 defaults)
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 8192
    channel_max: int = 512
    style_mixing: float = 0.9
    mixing: str = "per-sample"           # or per-batch (NVIDIA's StyleGAN1 training)
    # schedule
    kimg: float = 25000.0
    progressive: bool = True
    start_resolution: int = 8
    stable_kimg: float = 600.0
    fade_kimg: float = 600.0
    batch: int = 32
    batch_gpu: Optional[int] = None         # None: batch / processes (no accumulation)
    batch_schedule: dict = field(default_factory=dict)   # {resolution: total batch}
    lr: float = 0.001
    lr_schedule: dict = field(default_factory=lambda: dict(DEFAULT_LR_SCHEDULE))
    # losses and averaging
    r1_gamma: float = 10.0
    r1_interval: int = 1
    ema_kimg: float = 10.0
    mirror: bool = True
    # execution
    device: str = "auto"
    backend: str = "auto"
    amp: str = "off"
    checkpoint_blocks: int = 0
    cpu_threads: Optional[int] = None       # torch intra-op threads; None: torch's default
    workers: int = 2
    seed: int = 0
    # outputs
    snapshot_kimg: float = 50.0             # checkpoint and sample grid every this many kimg
    snapshot_minutes: float = 0.0           # ... and every this many minutes (0: off)
    keep_checkpoints: int = 3
    log_kimg: float = 1.0
    sample_grid: int = 32                   # images in each sample grid
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self):
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.mixing not in STYLE_MIXING_MODES:
            raise ValueError(f"mixing must be one of {', '.join(STYLE_MIXING_MODES)}, got "
                             f"{self.mixing!r}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.r1_interval < 1:
            raise ValueError(f"r1 interval must be >= 1, got {self.r1_interval}")
        if self.batch < 1 or (self.batch_gpu is not None and self.batch_gpu < 1):
            raise ValueError(f"batch and batch-gpu must be >= 1, got {self.batch} and "
                             f"{self.batch_gpu}")
        if self.snapshot_minutes < 0:
            raise ValueError(f"snapshot minutes must be >= 0, got {self.snapshot_minutes}")
        if self.kimg <= 0:
            raise ValueError(f"kimg must be > 0, got {self.kimg}")
        # schedules may come back from a checkpoint or JSON with string keys
        self.batch_schedule = {int(k): int(v) for k, v in self.batch_schedule.items()}
        self.lr_schedule = {int(k): float(v) for k, v in self.lr_schedule.items()}
        if not self.progressive:
            self.start_resolution = self.resolution

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def parse_schedule(text: str, value_type=float) -> dict:
    """``"128=0.0015,256=0.002"`` -> {128: 0.0015, 256: 0.002}."""
    schedule = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        resolution, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"schedule entries are RESOLUTION=VALUE, got {item!r}")
        try:
            schedule[int(resolution)] = value_type(value)
        except ValueError:
            raise ValueError(f"schedule entries are RESOLUTION=VALUE with an integer resolution "
                             f"and a number, got {item!r}") from None
    return schedule
