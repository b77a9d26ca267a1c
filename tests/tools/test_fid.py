import urllib.error
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import stylegan_fast
from stylegan_fast.tools import dataset_statistics, fid_metric, load_feature_network


class TinyFeatures(torch.nn.Module):
    """A small feature network with the standard Inception's interface: uint8 [N, 3, H, W] in,
    with a return_features flag; fixed random convs, then global mean and std per channel."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(images.float() / 127.5 - 1, size=(16, 16))
        x = torch.relu(self.conv(x))
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)


@pytest.fixture(scope="module")
def feature_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "features.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation warning
        torch.jit.save(torch.jit.script(TinyFeatures()), str(path))
    return path


def random_covariance(rng, d):
    a = rng.standard_normal((d, 2 * d))
    return a @ a.T / (2 * d)


def test_frechet_distance_against_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    for d in (1, 5, 64):
        x = rng.standard_normal((500, d)) @ rng.standard_normal((d, d))
        y = rng.standard_normal((400, d)) * 1.5 + 0.3
        mu1, mu2 = x.mean(0), y.mean(0)
        s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
        trace_sqrt = np.real(np.trace(scipy_linalg.sqrtm(s1 @ s2)))
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
        assert np.isclose(fid_metric.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-6)
        assert np.isclose(fid_metric.trace_sqrt_product_eigh(s1, s2), trace_sqrt, rtol=1e-6)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    sigma, mu = random_covariance(rng, 16), rng.standard_normal(16)
    assert abs(fid_metric.frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.1, 2, 16), rng.uniform(0.1, 2, 16)
    expected = np.sum((mu - 1) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert np.isclose(fid_metric.frechet_distance(mu, np.diag(a), np.ones(16), np.diag(b)),
                      expected)
    # a singular covariance (rank 2 of 8) takes the eigen-decomposition path as well
    low = rng.standard_normal((8, 2))
    value = fid_metric.trace_sqrt_product_eigh(low @ low.T, random_covariance(rng, 8))
    assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="covariances"):
        fid_metric.frechet_distance(mu, sigma, mu, sigma[:4, :4])


def write_images(folder, count, seed, brightness):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(rng.normal(brightness, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def test_feature_network_file(feature_file, tmp_path):
    network = load_feature_network(feature_file, device="cpu")
    assert network.return_features
    features = network(torch.zeros(5, 1, 16, 16, dtype=torch.uint8))  # grayscale -> 3 channels
    assert features.shape == (5, 16) and features.dtype == torch.float64
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(fid_metric.FeatureNetworkError, match="not a TorchScript file"):
        load_feature_network(tmp_path / "junk.pt")
    with pytest.raises(fid_metric.FeatureNetworkError, match="does not exist"):
        load_feature_network(tmp_path / "missing.pt")


def test_missing_inception_without_network_is_a_clear_error(tmp_path, monkeypatch):
    def offline(cache_dir):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fid_metric, "fetch_inception", offline)
    with pytest.raises(fid_metric.FeatureNetworkError, match="--inception PATH"):
        load_feature_network(cache_dir=tmp_path)
    (tmp_path / fid_metric.INCEPTION_FILE).write_bytes(b"")  # found in the cache: no fetch
    with pytest.raises(fid_metric.FeatureNetworkError, match="not a TorchScript file"):
        load_feature_network(cache_dir=tmp_path)


def test_dataset_statistics_are_cached(feature_file, tmp_path, monkeypatch):
    data = write_images(tmp_path / "data", 12, 0, 120)
    network = load_feature_network(feature_file, device="cpu")
    mu, sigma = dataset_statistics(str(data), 16, network, num=10, cache_dir=tmp_path / "c")
    assert mu.shape == (16,) and sigma.shape == (16, 16)
    assert len(list((tmp_path / "c").glob("stats-*.npz"))) == 1
    monkeypatch.setattr(fid_metric.FeatureNetwork, "__call__",
                        lambda *a: pytest.fail("statistics recomputed despite the cache"))
    cached_mu, cached_sigma = dataset_statistics(str(data), 16, network, num=10,
                                                 cache_dir=tmp_path / "c")
    assert np.array_equal(mu, cached_mu) and np.array_equal(sigma, cached_sigma)
    monkeypatch.undo()
    dataset_statistics(str(data), 16, network, num=8, cache_dir=tmp_path / "c")  # another key
    assert len(list((tmp_path / "c").glob("stats-*.npz"))) == 2


def test_fid_end_to_end(tiny_checkpoint, feature_file, tmp_path):
    path, _ = tiny_checkpoint
    dark = write_images(tmp_path / "dark", 24, 1, 40)
    bright = write_images(tmp_path / "bright", 24, 2, 220)
    network = load_feature_network(feature_file, device="cpu")
    # two sets drawn alike are closer than two sets drawn apart
    same = fid_metric.frechet_distance(
        *dataset_statistics(str(dark), 16, network, cache_dir=tmp_path / "c"),
        *dataset_statistics(str(write_images(tmp_path / "dark2", 24, 3, 40)), 16, network,
                            cache_dir=tmp_path / "c"))
    apart = fid_metric.frechet_distance(
        *dataset_statistics(str(dark), 16, network, cache_dir=tmp_path / "c"),
        *dataset_statistics(str(bright), 16, network, cache_dir=tmp_path / "c"))
    assert 0 <= same < apart
    score = stylegan_fast.fid(path, str(dark), num=16, inception=feature_file, batch=8,
                              cache_dir=tmp_path / "c", device="cpu")
    assert np.isfinite(score) and score > 0
    again = stylegan_fast.fid(path, str(dark), num=16, inception=feature_file, batch=8,
                              cache_dir=tmp_path / "c", device="cpu")
    assert again == score  # seeded latents and noise
    with pytest.raises(ValueError, match="num"):
        stylegan_fast.fid(path, str(dark), num=1, inception=feature_file)
