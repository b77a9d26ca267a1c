"""NVIDIA's StyleGAN1 pickles through every tool: convert, load_generator, generate, mix,
interpolate, fid, train --resume (fine-tuning) and bench --model --ckpt."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import stylegan_fast
from stylegan_fast import cli
from stylegan_fast.train import checkpoint
from tests.compat.stylegan1_official import official_networks, write_official_pickle

SMALL = dict(fmap_base=64, fmap_max=8, latent_size=8, dlatent_size=8, mapping_layers=2)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(official pickle, our checkpoint converted from it by the CLI), 32 px."""
    folder = tmp_path_factory.mktemp("official")
    pkl = write_official_pickle(folder / "karras2019stylegan-tiny-32x32.pkl",
                                official_networks(32, seed=3, **SMALL))
    assert cli.main(["convert", str(pkl), str(folder / "tiny.pt")]) == 0
    return pkl, folder / "tiny.pt"


def test_load_generator_takes_the_pickle_or_the_checkpoint(official):
    pkl, converted = official
    from_pkl = stylegan_fast.load_generator(pkl, "cpu")
    from_pt = stylegan_fast.load_generator(converted, "cpu")
    assert from_pkl.truncation == from_pt.truncation == (0.7, 8)  # NVIDIA's defaults
    assert from_pt.official["source"] == pkl.name
    z = torch.randn(3, 8)
    for trained in (from_pkl, from_pt):
        assert trained.lod == 0 and trained.image_resolution == 32
    torch.testing.assert_close(from_pkl.synthesize(from_pkl.map(z, 0.7, 8)),
                               from_pt.synthesize(from_pt.map(z, 0.7, 8)), rtol=0, atol=0)


def _pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_generate_mix_interpolate_fid(official, tmp_path, capsys):
    pkl, converted = official
    for name, ckpt in (("pkl", pkl), ("pt", converted)):
        assert cli.main(["generate", "--ckpt", str(ckpt), "--seeds", "0-1", "--out",
                         str(tmp_path / name), "--device", "cpu"]) == 0
    assert np.array_equal(_pixels(tmp_path / "pkl/seed0001.png"),
                          _pixels(tmp_path / "pt/seed0001.png"))
    # the default truncation of an official model is NVIDIA's psi 0.7 below layer 8; 'none'
    # spells NVIDIA's truncation_cutoff=None (no truncation), as --trunc 1 does
    flags = {"default": [], "psi07": ["--trunc", "0.7", "--trunc-cutoff", "8"],
             "none": ["--trunc-cutoff", "none"], "psi1": ["--trunc", "1"],
             "all": ["--trunc-cutoff", "all"], "cut4": ["--trunc-cutoff", "4"]}
    for name, extra in flags.items():
        assert cli.main(["generate", "--ckpt", str(converted), "--seeds", "4", "--out",
                         str(tmp_path / name), "--device", "cpu", *extra]) == 0
    image = {name: _pixels(tmp_path / name / "seed0004.png") for name in flags}
    assert np.array_equal(image["default"], image["psi07"])
    assert np.array_equal(image["none"], image["psi1"])
    assert not np.array_equal(image["default"], image["none"])
    assert np.array_equal(image["all"], image["default"])  # 32 px: 8 layers, all below 8
    assert not np.array_equal(image["cut4"], image["default"])
    assert cli.main(["mix", "--ckpt", str(pkl), "--rows", "0", "--cols", "1-2", "--out",
                     str(tmp_path / "mix.png"), "--device", "cpu"]) == 0
    assert cli.main(["interpolate", "--ckpt", str(converted), "--seeds", "0,1", "--frames", "2",
                     "--out", str(tmp_path / "loop.gif"), "--device", "cpu"]) == 0
    from tests.tools.test_fid import TinyFeatures, write_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(TinyFeatures()), str(tmp_path / "net.pt"))
    data = write_images(tmp_path / "data", 8, 0, 100)
    capsys.readouterr()
    assert cli.main(["fid", "--ckpt", str(pkl), "--data", str(data), "--num", "8", "--inception",
                     str(tmp_path / "net.pt"), "--cache", str(tmp_path / "c"),
                     "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("fid ")


@pytest.mark.parametrize("argv, message", [
    (["convert", "{missing}", "{tmp}/x.pt"], "does not exist"),
    (["convert", "{pkl}", "{pt}"], "exists"),
    (["convert", "{pt}", "{tmp}/x.pt"], "zip file"),
    (["generate", "--ckpt", "{pkl}", "--seeds", "0", "--out", "{tmp}", "--trunc-cutoff", "x"],
     None),
])
def test_bad_input(official, tmp_path, capsys, argv, message):
    values = {"pkl": official[0], "pt": official[1], "missing": tmp_path / "missing.pkl",
              "tmp": tmp_path}
    argv = [a.format(**values) for a in argv]
    if message is None:  # an argparse usage error
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert "--trunc-cutoff" in capsys.readouterr().err
        return
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stylegan-fast {argv[0]}: error:") and message in err


def test_fine_tuning_resumes_the_converted_checkpoint(official, tmp_path, capsys):
    pkl, converted = official
    run = tmp_path / "run"
    assert cli.main(["train", "--resume", str(converted), "--out", str(run)]) == 2
    assert "missing --data" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(converted), "--data", "builtin:faces", "--out",
                     str(run), "--kimg", "0.004", "--batch", "2", "--workers", "0",
                     "--progress", "false", "--device", "cpu"]) == 0
    state = checkpoint.load(run)
    before = checkpoint.load(converted)
    assert state["progress"]["nimg"] == 4 and state["progress"]["lod"] == 0
    assert state["config"]["mixing"] == "per-batch" and state["config"]["resolution"] == 32
    assert state["official"]["source"] == pkl.name  # provenance and truncation defaults kept
    changed = [k for k in before["G"] if not torch.equal(before["G"][k], state["G"][k])]
    assert "synthesis.const" in changed  # G was trained from the official weights
    assert stylegan_fast.load_generator(run, "cpu").truncation == (0.7, 8)


def test_bench_model_ckpt(official, capsys):
    pkl, _ = official
    assert cli.main(["bench", "--model", "--ckpt", str(pkl), "--device", "cpu", "--backends",
                     "eager,ref", "--batch", "2", "--reps", "1", "--warmup", "0"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("generate")]
    assert [(r[1], r[3]) for r in rows] == [("eager", "2x32"), ("ref", "2x32")]
    assert cli.main(["bench", "--model", "--ckpt", "missing.pkl", "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["bench", "--ckpt", str(pkl), "--device", "cpu"]) == 2
    assert cli.main(["bench", "--model", "--ckpt", str(pkl), "--resolutions", "64",
                     "--device", "cpu"]) == 2
    assert "32 px generator" in capsys.readouterr().err
