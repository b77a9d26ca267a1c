import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_fast.train import TrainConfig, train
from stylegan_fast.train.data import (
    DatasetError,
    ImageDataset,
    ShardedInfiniteSampler,
    builtin_faces,
    mirror,
    open_dataset,
    reals_at,
    to_square_array,
)


def write_image(path, size=(40, 30), mode="RGB", color=(200, 100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path)
    return path


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tmp_path / "nowhere"), 16)
    with pytest.raises(DatasetError, match="unknown builtin"):
        open_dataset("builtin:cats", 16)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match="no readable images"):
        open_dataset(str(tmp_path), 16)


def test_unreadable_files_are_skipped_with_a_warning_and_a_count(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "sub" / "b.jpg")
    write_image(tmp_path / "sub" / "c.webp")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "sub" / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        dataset = open_dataset(str(tmp_path), 16)
    assert len(dataset) == 3 and sorted(dataset.skipped) == ["broken.png", "sub/empty.jpg"]
    image = dataset[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
    assert tuple(image[:, 8, 8]) == (200, 100, 50)


def test_training_on_a_folder_with_only_broken_files_fails_cleanly(tmp_path, capsys):
    from stylegan_fast import cli

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"nope")
    code = cli.main(["train", "--data", str(tmp_path / "data"), "--out",
                     str(tmp_path / "run"), "--resolution", "16", "--device", "cpu"])
    assert code == 2
    warning, error = capsys.readouterr().err.splitlines()  # one line each, no source lines
    assert warning.startswith("stylegan-fast train: warning: ")
    assert "skipped 1 unreadable" in warning
    assert error.startswith("stylegan-fast train: error: ") and "no readable images" in error
    assert not list((tmp_path).glob("run/checkpoint-*"))


def test_zip_dataset_and_grayscale_detection(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"g{i}.png", mode="L", color=(10 * i,))
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(3):
            z.write(tmp_path / f"g{i}.png", f"dir/g{i}.png")
        z.writestr("readme.txt", "x")
    dataset = open_dataset(str(archive), 8)
    assert len(dataset) == 3 and dataset.channels == 1
    assert dataset[2].shape == (1, 8, 8) and int(dataset[2][0, 4, 4]) == 20
    assert open_dataset(str(archive), 8, channels=3)[0].shape == (3, 8, 8)
    with pytest.raises(DatasetError, match="not a zip"):
        open_dataset(str(tmp_path / "g0.png"), 8)


def test_zip_dataset_trains(tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(4):
            path = write_image(tmp_path / f"{i}.png", color=(60 * i, 20, 200))
            z.write(path, path.name)
    summary = train(TrainConfig(data=str(archive), out=str(tmp_path / "run"), resolution=8,
                                z_dim=8, w_dim=8, mapping_layers=1, channel_base=32,
                                channel_max=8, batch=2, kimg=0.004, device="cpu", workers=1,
                                backend="ref", progress=False, sample_grid=2, cpu_threads=1))
    assert summary["nimg"] == 4


def test_center_crop_and_resize():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # the centred 20 x 20 square is white
    out = to_square_array(Image.fromarray(image), 10, 3)
    assert out.shape == (3, 10, 10) and out.min() == 255


def test_builtin_faces():
    dataset = builtin_faces(32)
    assert len(dataset) == 100 and dataset.channels == 1
    assert dataset[0].shape == (1, 32, 32) and dataset[0].dtype == torch.uint8
    assert dataset.images.float().std() > 20  # real pictures, not blank


def test_sampler_shards_disjointly_and_resumes():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    whole = take(ShardedInfiniteSampler(10, seed=3), 30)
    assert sorted(whole[:10]) == list(range(10)) and whole[:10] != whole[10:20]
    rank0 = take(ShardedInfiniteSampler(10, 0, 2, seed=3), 15)
    rank1 = take(ShardedInfiniteSampler(10, 1, 2, seed=3), 15)
    assert rank0 == whole[0::2] and rank1 == whole[1::2]
    assert take(ShardedInfiniteSampler(10, 1, 2, seed=3, start=6), 9) == rank1[6:]


def test_reals_fade_between_resolutions():
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(reals_at(x, 16, 0.0), x)
    half = torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(reals_at(x, 8, 1.0), half)
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), scale_factor=2)
    torch.testing.assert_close(reals_at(x, 16, 0.25), 0.25 * blurred + 0.75 * x)


def test_mirror_flips_about_half():
    torch.manual_seed(0)
    x = torch.arange(4.0).expand(1000, 1, 1, 4)
    flipped = (mirror(x)[:, 0, 0, 0] == 3).float().mean()
    assert 0.4 < flipped < 0.6


def test_image_dataset_pickles_without_its_zip_handle(tmp_path):
    import pickle

    write_image(tmp_path / "a.png")
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.write(tmp_path / "a.png", "a.png")
    dataset = ImageDataset(str(tmp_path / "d.zip"), 8)
    dataset[0]
    copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(copy[0], dataset[0])
