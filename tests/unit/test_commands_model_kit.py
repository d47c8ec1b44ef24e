"""`model-kit` (diagnostics/commands/model_kit.py): a missing optional library is one line naming the install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

I9_ROOT = Path(__file__).resolve().parents[2]


def i9_cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnostics", *map(str, args)], capture_output=True, cwd=I9_ROOT,
                          input=stdin, timeout=120)


def usage_line(proc) -> str:
    """The one stderr line of a usage error (exit 2), and nothing else."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout.decode())
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_model_kit_without_tokenizers_is_one_line_naming_the_install(tmp_path):
    fake = tmp_path / "mods"
    fake.mkdir()
    (fake / "tokenizers.py").write_text("raise ModuleNotFoundError(\"No module named 'tokenizers'\", "
                                        "name='tokenizers')\n")
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "model-kit", "minicpm-v-2_6", str(tmp_path / "kit")],
                          capture_output=True, cwd=I9_ROOT, env={"PYTHONPATH": f"{fake}:{I9_ROOT}", "PATH": "/usr/bin"})
    line = usage_line(proc)
    assert "tokenizers" in line and "pip install" in line


def test_an_out_dir_the_file_system_refuses_is_one_line(tmp_path, capsys):                  # newcomer-3 #332, #334
    from diagnostics.cli import main

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for out, words in ((tmp_path / ("k" * 300), "File name too long"), (tmp_path / "loop", "a symlink that leads")):
        assert main(["model-kit", "minicpm-v-2_6", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
