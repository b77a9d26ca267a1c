import subprocess
import sys

from stylegan_fast import cli


def test_doctor_reports_every_backend(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "nvcc" in out and "ninja" in out and "ext. cache" in out
    assert "ref      available" in out


def test_console_script_runs_and_import_compiles_nothing():
    result = subprocess.run([sys.executable, "-c",
                             "import sys, stylegan_fast;"
                             "assert 'triton' not in sys.modules, 'triton imported at import'"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "stylegan_fast.cli", "doctor"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "backends for cpu" in result.stdout, result.stderr
