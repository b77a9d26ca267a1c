"""Frechet Inception Distance (FID) of G_ema against a dataset.

Features f (the 2048-d pool features of Inception-v3) of real and generated images are modelled
as Gaussians N(mu_r, S_r) and N(mu_g, S_g); FID is the Frechet (2-Wasserstein) distance between
them::

    FID = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

The feature network is a TorchScript file (``torch.jit.save``; loaded with ``torch.jit.load``)
whose forward takes uint8 images [N, 3, H, W] (0-255, any size: it resizes by itself) and returns
features [N, D]; if its forward has a ``return_features`` argument, it is called with
``return_features=True``. The standard one is the TensorFlow FID Inception (2015-12-05) as
TorchScript, :data:`INCEPTION_URL`, the same network behind the published StyleGAN FIDs: pass it
with ``inception=PATH``, or it is looked for in (and, if the network allows, downloaded to) the
cache folder. Grayscale images are repeated to 3 channels.

The real images' (mu, S) are cached in the cache folder, keyed by the dataset (path and its
modification time), resolution, channels, feature network (file hash) and image count.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.request
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ..errors import UserError
from ..train.data import BUILTIN_FACES, open_dataset
from ..train.images import to_uint8
from .generation import latents_from_seeds
from .loading import as_trained, resolve_device

INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")
INCEPTION_FILE = "inception-2015-12-05.pt"
CACHE_ENV = "STYLEGAN_FAST_METRICS_CACHE"
BATCH = 32


class FeatureNetworkError(UserError, RuntimeError):
    """The feature network file is missing, cannot be fetched, or is not TorchScript."""


def default_cache_dir() -> Path:
    """``$STYLEGAN_FAST_METRICS_CACHE``, else ``~/.cache/stylegan_fast/metrics``."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/stylegan_fast/metrics")).expanduser()


# ---- the distance ------------------------------------------------------------------------------
def trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 by eigen-decompositions only.

    With S1 = U diag(l) U^T and R = S1^(1/2) = U diag(sqrt(l)) U^T, S1 S2 = R (R S2) has the
    eigenvalues of (R S2) R = R S2 R, which is symmetric PSD; so the trace of the square root is
    sum_i sqrt(eig_i(R S2 R)) (negative round-off eigenvalues clamped to 0)."""
    values, vectors = np.linalg.eigh(sigma1)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ sigma2 @ root), 0, None)).sum())


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)): ``scipy.linalg.sqrtm`` (real part) if scipy is installed and the result
    is finite, else :func:`trace_sqrt_product_eigh`."""
    try:
        from scipy.linalg import sqrtm
    except ImportError:
        return trace_sqrt_product_eigh(sigma1, sigma2)
    trace = float(np.real(np.trace(sqrtm(sigma1 @ sigma2))))
    return trace if np.isfinite(trace) else trace_sqrt_product_eigh(sigma1, sigma2)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64)::

        d^2 = |mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of one size, got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (mu1.size,) * 2 or sigma2.shape != sigma1.shape:
        raise ValueError(f"covariances must be {mu1.size}x{mu1.size}, got {sigma1.shape} and "
                         f"{sigma2.shape}")
    distance = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                - 2 * trace_sqrt_product(sigma1, sigma2))
    return float(max(distance, 0.0))


# ---- the feature network -----------------------------------------------------------------------
class FeatureNetwork:
    """A TorchScript feature network (module doc) and its file's SHA-256 (the cache key)."""

    def __init__(self, path: Union[str, Path], device="cpu"):
        self.path, self.device = Path(path), resolve_device(device)
        if not self.path.is_file():
            raise FeatureNetworkError(f"feature network {str(self.path)!r} " + (
                "is a folder, not a file" if self.path.is_dir() else "does not exist"))
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format
                warnings.simplefilter("ignore", FutureWarning)  # the standard network ships in
                self.module = torch.jit.load(str(self.path), map_location=self.device)
        except Exception as exc:  # torch raises RuntimeError or ValueError for non-TorchScript
            reason = str(exc).split(". ")[0].strip()  # torch's first sentence says what it is
            raise FeatureNetworkError(f"feature network {str(self.path)!r} is not a TorchScript "
                                      f"file (torch.jit.save): {reason}") from exc
        self.module.eval()
        arguments = [a.name for a in self.module.forward.schema.arguments]
        self.return_features = "return_features" in arguments
        self.digest = hashlib.sha256(self.path.read_bytes()).hexdigest()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 1 or 3, H, W] -> float64 features [N, D] (on the CPU)."""
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        images = images.to(self.device)
        if self.return_features:
            features = self.module(images, return_features=True)
        else:
            features = self.module(images)
        return features.reshape(images.shape[0], -1).double().cpu()


def fetch_inception(cache_dir: Path) -> Path:
    """Download :data:`INCEPTION_URL` into ``cache_dir`` (atomically) and return its path."""
    target = cache_dir / INCEPTION_FILE
    cache_dir.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(INCEPTION_URL, timeout=60) as response, open(temp, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def load_feature_network(path: Union[str, Path, None] = None, device="auto",
                         cache_dir: Union[str, Path, None] = None) -> FeatureNetwork:
    """The feature network at ``path``; None: the standard Inception from the cache folder,
    downloaded there first if missing (a clear error when that fails)."""
    if path is None:
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        path = cache_dir / INCEPTION_FILE
        if not path.is_file():
            try:
                path = fetch_inception(cache_dir)
            except OSError as exc:  # URLError, timeouts, no network, disk errors
                raise FeatureNetworkError(
                    f"the Inception feature network is not at {str(path)!r} and could not be "
                    f"downloaded ({exc}). Fetch {INCEPTION_URL} where there is network access "
                    f"and pass it with --inception PATH (Python: inception=PATH), or put it at "
                    f"that path.") from exc
    return FeatureNetwork(path, device)


# ---- statistics --------------------------------------------------------------------------------
class FeatureStatistics:
    """Running mean and covariance of feature rows, accumulated in float64::

        mu = sum(f) / n,    S = (sum(f f^T) - n mu mu^T) / (n - 1)
    """

    def __init__(self):
        self.count, self.total, self.outer = 0, None, None

    def add(self, features: torch.Tensor) -> None:
        if self.total is None:
            self.total = torch.zeros(features.shape[1], dtype=torch.float64)
            self.outer = torch.zeros(features.shape[1], features.shape[1], dtype=torch.float64)
        self.count += features.shape[0]
        self.total += features.sum(0)
        self.outer += features.T @ features

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise UserError(f"FID needs at least 2 images per side, got {self.count}")
        mu = self.total / self.count
        sigma = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        return mu.numpy(), sigma.numpy()


def _dataset_identity(data: str) -> dict:
    if data == BUILTIN_FACES:
        return {"data": data}
    path = Path(data).resolve()
    return {"data": str(path), "mtime_ns": path.stat().st_mtime_ns if path.exists() else None}


def dataset_statistics(data: str, resolution: int, network: FeatureNetwork,
                       num: Optional[int] = None, channels: Optional[int] = None,
                       batch: int = BATCH, cache_dir: Union[str, Path, None] = None,
                       use_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the features of the first ``num`` (None: all) images of ``data`` (a folder,
    a .zip or builtin:faces, read as in training) at ``resolution``; cached in ``cache_dir``."""
    dataset = open_dataset(data, resolution, channels)
    count = len(dataset) if num is None else min(num, len(dataset))
    if count < 2:
        raise UserError(f"dataset {data!r} has {len(dataset)} image(s); FID needs at least 2")
    key = json.dumps({**_dataset_identity(data), "resolution": resolution,
                      "channels": dataset.channels, "network": network.digest, "count": count},
                     sort_keys=True)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache_dir / f"stats-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    if use_cache and cached.is_file():
        stored = np.load(cached)
        return stored["mu"], stored["sigma"]
    statistics = FeatureStatistics()
    for start in range(0, count, batch):
        statistics.add(network(torch.stack([dataset[i]
                                            for i in range(start, min(start + batch, count))])))
    mu, sigma = statistics.result()
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        temp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp.npz")
        np.savez(temp, mu=mu, sigma=sigma, key=key)
        os.replace(temp, cached)
    return mu, sigma


def generator_statistics(generator, network: FeatureNetwork, num: int, batch: int = BATCH,
                         truncation_psi: float = 1.0, seed: int = 0, device="auto"
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the features of ``num`` images of G_ema (latents of seeds seed ..
    seed + num - 1, random noise drawn after ``torch.manual_seed(seed)``)."""
    trained = as_trained(generator, device)
    statistics = FeatureStatistics()
    devices = [trained.device] if trained.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(seed, seed + num, batch):
            z = latents_from_seeds(range(start, min(start + batch, seed + num)), trained.G.z_dim)
            ws = trained.map(z, truncation_psi)
            statistics.add(network(to_uint8(trained.synthesize(ws, "random"))))
    return statistics.result()


def fid(generator, data: str, num: int = 50000, inception: Union[str, Path, None] = None,
        batch: int = BATCH, truncation_psi: float = 1.0, cache_dir: Union[str, Path, None] = None,
        device="auto") -> float:
    """FID between ``num`` images of G_ema and the first ``num`` images of ``data`` (all of them
    if it has fewer), compared at the generator's trained resolution."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise UserError(f"num must be an integer >= 2, got {num!r}")
    trained = as_trained(generator, device)
    network = load_feature_network(inception, trained.device, cache_dir)
    real = dataset_statistics(data, trained.image_resolution, network, num,
                              trained.G.synthesis.img_channels, batch, cache_dir)
    fake = generator_statistics(trained, network, num, batch, truncation_psi,
                                device=trained.device)
    return frechet_distance(*real, *fake)
