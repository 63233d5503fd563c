"""The entry point: config errors answer in one line, before torch (or mlflow) is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("override, key", [("train.epochz=3", "train.epochz"), ("data.image_size=0", "data.image_size"),
                                           ("aug.scale_min=3", "aug.scale_min"), ("train.lr=-1", "train.lr")])
def test_config_errors_answer_before_torch_is_imported(override: str, key: str):
    code = ("import sys\n"
            "from foldtrain import main\n"
            f"status = main.main([{override!r}])\n"
            "assert status == 2, status\n"
            "assert 'torch' not in sys.modules and 'mlflow' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("raised, one_line", [("UserError('data.root is empty')", True),
                                              ("ValueError('a bug deep inside')", False),
                                              ("FileNotFoundError('a bug reading a file')", False)])
def test_only_foldtrains_own_errors_print_as_one_line(raised: str, one_line: bool):
    """A user's mistake is one line; a bare ValueError or FileNotFoundError is a bug and keeps its traceback."""
    code = ("import sys\n"
            "from foldtrain import main\n"
            "from foldtrain.user_error import UserError\n"
            "def train(cfg, status, quiet):\n"
            f"    raise {raised}\n"
            "main.train = train\n"
            "sys.exit(main.main(['run.name=x']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode != 0
    assert ("Traceback" in result.stderr) != one_line, result.stderr
    if one_line:
        assert result.stderr.strip().splitlines() == ["foldtrain: error: data.root is empty"]
