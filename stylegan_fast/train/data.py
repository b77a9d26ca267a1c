"""Training images: a folder (recursive), a zip, or ``builtin:faces``; sharded per rank.

Every image is converted to the dataset's channel count (1: grayscale, 3: RGB), center-cropped to
a square (the largest one, centred) and resized to ``resolution`` x ``resolution`` with a Lanczos
filter, giving uint8 [C, R, R]. The trainer maps it to [-1, 1] (``x / 127.5 - 1``).

``builtin:faces`` is the set of real face photographs that scikit-image ships
(``skimage.data.lfw_subset()``: its first 100 images are faces, 25 x 25 grayscale).
"""
from __future__ import annotations

import io
import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..nn import downsample2d, upsample2d

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
BUILTIN_FACES = "builtin:faces"
LFW_FACES = 100  # lfw_subset(): faces first, then non-faces
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")


class DatasetError(UserError):
    """The dataset is missing, empty or not a dataset."""


def to_square_array(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """uint8 [C, R, R]: ``image`` in grayscale/RGB, centre-cropped to a square, Lanczos-resized."""
    image = image.convert("L" if channels == 1 else "RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.LANCZOS)
    array = np.array(image, dtype=np.uint8)
    return array[None] if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


class ImageDataset(torch.utils.data.Dataset):
    """Images from a folder or zip, decoded on demand; ``dataset[i]`` -> uint8 [C, R, R].

    Files that cannot be opened are skipped when the dataset is scanned (one warning with the
    count, ``skipped`` holds their names). A file that opens but fails to decode later is
    replaced by the next image, with a warning.
    """

    def __init__(self, path: str, resolution: int, channels: Optional[int] = None):
        self.path, self.resolution = Path(path), resolution
        if not self.path.exists():
            raise DatasetError(f"dataset {path!r} does not exist (expected a folder of images, "
                               f"a .zip of them, or {BUILTIN_FACES})")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise DatasetError(f"dataset {path!r} is a file but not a zip archive")
        self._zip: Optional[zipfile.ZipFile] = None
        self._zip_pid: Optional[int] = None
        self.names, self.skipped, modes = [], [], []
        for name in self._candidate_names():
            try:
                with self._open(name) as image:
                    mode = image.mode
                    image.verify()
            except Exception:  # PIL raises many types for broken files
                self.skipped.append(name)
            else:
                self.names.append(name)
                modes.append(mode)
        if self.skipped:
            warnings.warn(f"dataset {path!r}: skipped {len(self.skipped)} unreadable file(s), "
                          f"e.g. {self.skipped[0]!r}", stacklevel=2)
        if not self.names:
            raise DatasetError(f"dataset {path!r} has no readable images "
                               f"({', '.join(IMAGE_EXTENSIONS)}; {len(self.skipped)} unreadable)")
        self.channels = channels or (1 if modes[0] in GRAYSCALE_MODES else 3)

    def _candidate_names(self) -> list[str]:
        if self.is_zip:
            with zipfile.ZipFile(self.path) as archive:
                names = archive.namelist()
        else:
            names = [str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file()]
        return sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))

    def _open(self, name: str) -> Image.Image:
        if not self.is_zip:
            return Image.open(self.path / name)
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return Image.open(io.BytesIO(self._zip.read(name)))

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_zip_pid": None}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.names)):
            name = self.names[(index + offset) % len(self.names)]
            try:
                with self._open(name) as image:
                    return torch.from_numpy(to_square_array(image, self.resolution,
                                                            self.channels))
            except Exception as exc:  # a file that passed the scan but does not decode
                warnings.warn(f"dataset {str(self.path)!r}: cannot decode {name!r} ({exc}); "
                              f"using the next image instead")
        raise DatasetError(f"dataset {str(self.path)!r}: no image decodes")


class TensorImageDataset(torch.utils.data.Dataset):
    """Images held in memory as uint8 [N, C, R, R]."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.channels, self.resolution = images.shape[1], images.shape[-1]
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def builtin_faces(resolution: int, channels: Optional[int] = None) -> TensorImageDataset:
    """The 100 LFW faces of scikit-image (25 x 25 grayscale) at ``resolution``."""
    from skimage.data import lfw_subset

    faces = (lfw_subset()[:LFW_FACES] * 255).round().astype(np.uint8)
    images = [to_square_array(Image.fromarray(face), resolution, channels or 1) for face in faces]
    return TensorImageDataset(torch.from_numpy(np.stack(images)))


def open_dataset(spec: str, resolution: int, channels: Optional[int] = None):
    """``spec``: a folder, a .zip or ``builtin:faces``; ``channels`` None: 1 if the (first)
    image is grayscale, else 3."""
    if spec == BUILTIN_FACES:
        return builtin_faces(resolution, channels)
    if spec.startswith("builtin:"):
        raise DatasetError(f"unknown builtin dataset {spec!r}; available: {BUILTIN_FACES}")
    return ImageDataset(spec, resolution, channels)


class ShardedInfiniteSampler(torch.utils.data.Sampler):
    """An endless stream of dataset indices, split between ranks, resumable at any position.

    The global stream concatenates permutations of range(n), permutation e drawn from a generator
    seeded with (seed, e). Rank r of W reads global positions r, r + W, r + 2W, ...; ``start`` is
    how many indices this rank has already read, so a run that resumes after ``nimg`` images
    (``start = nimg / W``) sees the same images as one that never stopped.
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start: int = 0, shuffle: bool = True):
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed, self.start, self.shuffle = seed, start, shuffle

    def _permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        position = self.start * self.world_size + self.rank
        epoch, permutation = -1, None
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                permutation = self._permutation(epoch)
            yield int(permutation[position % self.size])
            position += self.world_size


def batches(dataset, batch_gpu: int, rank: int, world_size: int, seed: int, start: int,
            workers: int, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """Endless uint8 batches [batch_gpu, C, R, R] for this rank, from position ``start``."""
    sampler = ShardedInfiniteSampler(len(dataset), rank, world_size, seed, start)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_gpu, sampler=sampler, num_workers=workers,
        pin_memory=pin_memory, drop_last=True,
        # the loader's own generator: creating it must not consume the global RNG (resume)
        generator=torch.Generator().manual_seed(seed), persistent_workers=False)
    return iter(loader)


def mirror(images: torch.Tensor) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 (draws from torch's RNG)."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def reals_at(images: torch.Tensor, resolution: int, lod: float) -> torch.Tensor:
    """Real images [N, C, R, R] as D sees them at ``lod`` (progressive growing).

    Box-downsampled to ``resolution``; while a level fades in (fractional lod, fade weight
    ``a = 1 - (lod - floor(lod))``) they are blended with their 2x-downsampled version, just
    like G's output::

        reals = lerp(upsample2d(downsample2d(x)), x, a)
    """
    if images.shape[-1] != resolution:
        images = torch.nn.functional.avg_pool2d(images, images.shape[-1] // resolution)
    fade_in = 1.0 - (lod - math.floor(lod))
    if fade_in < 1.0:
        images = torch.lerp(upsample2d(downsample2d(images)), images, fade_in)
    return images
