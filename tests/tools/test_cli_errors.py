"""Every user error of the command line is one line on stderr, ``stylegan-fast <cmd>: error:
...``, and exit status 2, never a traceback; a real bug keeps its traceback."""
import errno
import subprocess
import sys
import warnings

import pytest
import torch

from stylegan_fast import cli
from stylegan_fast.tools import commands as tool_commands

CASES = [
    # argparse: one line, not the usage block
    (["nope"], "invalid choice: 'nope'"),
    (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{tmp}/g", "--bogus"],
     "unrecognized arguments: --bogus"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "0"], "required: --out"),
    # seeds, numbers, device
    (["generate", "--ckpt", "{ckpt}", "--seeds", "x", "--out", "{tmp}/g"], "argument --seeds"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "5-2", "--out", "{tmp}/g"], "runs backwards"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "-1", "--out", "{tmp}/g"], "'-1'"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "", "--out", "{tmp}/g"], "empty seed spec"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "1,,2", "--out", "{tmp}/g"], "'1,,2'"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{tmp}/g", "--trunc", "nan"],
     "argument --trunc: expected a finite number"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{tmp}/g", "--device", "foo"],
     "unknown device 'foo'"),
    (["generate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{tmp}/g", "--device",
      "cuda:99"], "'cuda:99'"),
    # checkpoints
    (["generate", "--ckpt", "{tmp}/missing.pt", "--seeds", "0", "--out", "{tmp}/g"],
     "does not exist"),
    (["generate", "--ckpt", "{tmp}", "--seeds", "0", "--out", "{tmp}/g"], "no checkpoint"),
    (["generate", "--ckpt", "{random}", "--seeds", "0", "--out", "{tmp}/g"], "random.pt"),
    (["generate", "--ckpt", "{truncated}", "--seeds", "0", "--out", "{tmp}/g"], "truncated"),
    (["generate", "--ckpt", "{empty}", "--seeds", "0", "--out", "{tmp}/g"], "empty"),
    (["mix", "--ckpt", "{random}.pkl", "--rows", "0", "--cols", "1", "--out", "{tmp}/m.png"],
     "does not exist"),
    # outputs
    (["generate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{random}"], "is a file"),
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "1", "--out", "{tmp}"], "is a folder"),
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "1", "--out", "{tmp}/m.foo"],
     "the suffix must be one of .png"),
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "1", "--out", "{random}/m.png"],
     "is a file, not a folder"),
    # styles, frames, fps
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "1", "--styles", "fine", "--out",
      "{tmp}/m.png"], "has 6 layers"),
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "1", "--styles", "0-99", "--out",
      "{tmp}/m.png"], "do not exist"),
    (["mix", "--ckpt", "{ckpt}", "--rows", "0", "--cols", "x", "--out", "{tmp}/m.png"],
     "argument --cols"),
    (["interpolate", "--ckpt", "{ckpt}", "--seeds", "0", "--out", "{tmp}/a.gif"],
     "at least 2 seeds"),
    (["interpolate", "--ckpt", "{ckpt}", "--seeds", "0,1", "--frames", "0", "--out",
      "{tmp}/a.gif"], "argument --frames"),
    (["interpolate", "--ckpt", "{ckpt}", "--seeds", "0,1", "--fps", "-1", "--out",
      "{tmp}/a.gif"], "argument --fps"),
    (["interpolate", "--ckpt", "{ckpt}", "--seeds", "0,1", "--out", "{tmp}/a.png"],
     ".gif, .mp4"),
    # fid (never the network: --inception is always given)
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}", "--num", "1", "--inception", "{net}"],
     "argument --num"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}", "--batch", "0", "--inception", "{net}"],
     "argument --batch"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}", "--inception", "{tmp}/missing.pt"],
     "does not exist"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}", "--inception", "{random}"],
     "not a TorchScript file"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}/nothing", "--inception", "{net}"],
     "does not exist"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{empty_dir}", "--inception", "{net}"],
     "no readable images"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{random}", "--inception", "{net}"],
     "not a zip"),
    (["fid", "--ckpt", "{ckpt}", "--data", "{tmp}", "--cache", "{random}", "--inception",
      "{net}"], "--cache"),
    # convert
    (["convert", "{tmp}/missing.pkl", "{tmp}/x.pt"], "does not exist"),
    (["convert", "{random}", "{tmp}/x.pt"], "could not be read as a pickle"),
    (["convert", "{ckpt}", "{tmp}/x.pt"], "zip file"),
    (["convert", "{random}", "{empty}"], "exists"),
    (["convert", "{random}", "{tmp}"], "is a folder"),
    # bench, build-ext
    (["bench", "--ops", "nope", "--device", "cpu"], "--ops: unknown nope"),
    (["bench", "--backends", "nope", "--device", "cpu"], "--backends: unknown nope"),
    (["bench", "--shapes", "1x2x3"], "NxCxHxW"),
    (["bench", "--dtypes", "float8"], "float8"),
    (["bench", "--reps", "0"], "argument --reps"),
    (["bench", "--device", "foo"], "unknown device"),
    (["bench", "--ckpt", "{ckpt}", "--device", "cpu"], "with --model"),
    (["bench", "--model", "--resolutions", "100", "--device", "cpu"], "power of two"),
    (["bench", "--model", "--ckpt", "{tmp}/missing.pt", "--device", "cpu"], "does not exist"),
    (["bench", "--plot", "{tmp}/p.png"], "--results"),
    (["bench", "--plot", "{tmp}/p.png", "--results", "{random}"], "not JSON"),
    (["bench", "--traffic", "--ops", "nope"], "--traffic --ops: unknown nope"),
    (["build-ext", "--arch", "foo"], "bad CUDA arch 'foo'"),
]


@pytest.fixture(scope="module")
def files(tiny_checkpoint, tmp_path_factory):
    """Placeholders of CASES -> paths: a checkpoint, damaged files, a feature network."""
    tmp = tmp_path_factory.mktemp("errors")
    from tests.tools.test_fid import TinyFeatures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(TinyFeatures()), str(tmp / "net.pt"))
    data = tiny_checkpoint[0].read_bytes()
    (tmp / "random.pt").write_bytes(b"\x13\x37 not a checkpoint" * 100)
    (tmp / "truncated.pt").write_bytes(data[:len(data) // 2])
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "empty_dir").mkdir()
    return {"ckpt": str(tiny_checkpoint[0]), "tmp": str(tmp), "net": str(tmp / "net.pt"),
            "random": str(tmp / "random.pt"), "truncated": str(tmp / "truncated.pt"),
            "empty": str(tmp / "empty.pt"), "empty_dir": str(tmp / "empty_dir")}


def run(argv: list) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # a usage error, while the arguments are parsed
        return exc.code


def assert_one_error_line(err: str, command: str, message: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"stylegan-fast{command}: error: "), err
    assert message in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_a_user_error_is_one_line_and_status_2(files, capsys, argv, message):
    argv = [a.format(**files) for a in argv]
    capsys.readouterr()
    assert run(argv) == 2
    command = "" if argv[0] == "nope" else f" {argv[0]}"
    assert_one_error_line(capsys.readouterr().err, command, message.format(**files))


def test_no_traceback_at_the_process_level(files):
    for argv, message in [(["generate", "--ckpt", files["truncated"], "--seeds", "0", "--out",
                            files["tmp"] + "/g"], "truncated"),
                          (["interpolate", "--ckpt", files["ckpt"], "--seeds", "0,x", "--out",
                            "a.gif"], "argument --seeds")]:
        result = subprocess.run([sys.executable, "-m", "stylegan_fast.cli", *argv], check=False,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert_one_error_line(result.stderr, f" {argv[0]}", message)


def test_an_os_error_of_a_command_is_one_line_naming_the_file(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/x/seed0000.png")

    monkeypatch.setattr(tool_commands, "run_generate", denied)
    assert cli.main(["generate", "--ckpt", "c", "--seeds", "0", "--out", "o"]) == 2
    assert_one_error_line(capsys.readouterr().err, " generate",
                          "'/x/seed0000.png': Permission denied")

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "o/seed0000.png")

    monkeypatch.setattr(tool_commands, "run_generate", full)
    assert cli.main(["generate", "--ckpt", "c", "--seeds", "0", "--out", "o"]) == 2
    assert_one_error_line(capsys.readouterr().err, " generate", "No space left on device")


def test_a_real_bug_keeps_its_traceback(monkeypatch, capsys):
    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(tool_commands, "run_generate", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["generate", "--ckpt", "c", "--seeds", "0", "--out", "o"])

    def io_error(args):
        raise OSError(errno.EIO, "Input/output error", "disk")

    monkeypatch.setattr(tool_commands, "run_generate", io_error)
    with pytest.raises(OSError):
        cli.main(["generate", "--ckpt", "c", "--seeds", "0", "--out", "o"])
    assert capsys.readouterr().err == ""


def test_ctrl_c_is_one_line_and_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool_commands, "run_mix", interrupted)
    assert cli.main(["mix", "--ckpt", "c", "--rows", "0", "--cols", "1", "--out", "m.png"]) == 130
    assert capsys.readouterr().err.strip() == "stylegan-fast mix: interrupted"
