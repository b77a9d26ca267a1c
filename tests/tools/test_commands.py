import warnings

import pytest
import torch
from PIL import Image

from stylegan_fast import cli


def test_generate_mix_interpolate(tiny_checkpoint, tmp_path, capsys):
    path, _ = tiny_checkpoint
    assert cli.main(["generate", "--ckpt", str(path.parent), "--seeds", "0-1,5", "--trunc",
                     "0.7", "--trunc-cutoff", "4", "--noise-mode", "const", "--out",
                     str(tmp_path / "gen")]) == 0
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == [
        "seed0000.png", "seed0001.png", "seed0005.png"]
    assert cli.main(["mix", "--ckpt", str(path), "--rows", "0-1", "--cols", "2-3", "--styles",
                     "middle", "--out", str(tmp_path / "mix.png")]) == 0
    assert Image.open(tmp_path / "mix.png").size == (3 * 64, 3 * 64)
    assert cli.main(["interpolate", "--ckpt", str(path), "--seeds", "0,1,2", "--frames", "2",
                     "--space", "w", "--out", str(tmp_path / "loop.gif")]) == 0
    assert Image.open(tmp_path / "loop.gif").n_frames == 6
    assert str(tmp_path / "loop.gif") in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["generate", "--ckpt", "{missing}", "--seeds", "0", "--out", "{tmp}"], "does not exist"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "3-1", "--out", "{tmp}"], "runs backwards"),
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "1", "--styles", "fine", "--out",
      "{tmp}/m.png"], "has 6 layers"),
    (["interpolate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{tmp}/a.gif"],
     "at least 2 seeds"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}/nothing", "--inception", "{missing}"],
     "does not exist"),
])
def test_bad_input_is_one_error_line(tiny_checkpoint, tmp_path, capsys, argv, message):
    values = {"ckpt": str(tiny_checkpoint[0]), "missing": str(tmp_path / "missing.pt"),
              "tmp": str(tmp_path)}
    try:
        status = cli.main([a.format(**values) for a in argv])
    except SystemExit as exc:  # a usage error (the seeds): while the arguments are parsed
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stylegan-fast {argv[0]}: error:") and message in err
    assert "\n" not in err


def test_fid_command(tiny_checkpoint, tmp_path, capsys):
    from tests.tools.test_fid import TinyFeatures, write_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(TinyFeatures()), str(tmp_path / "net.pt"))
    data = write_images(tmp_path / "data", 8, 0, 100)
    assert cli.main(["fid", "--ckpt", str(tiny_checkpoint[0]), "--data", str(data), "--num", "8",
                     "--inception", str(tmp_path / "net.pt"), "--cache", str(tmp_path / "c"),
                     "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("fid ")
