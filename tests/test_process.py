"""Process lifecycle helpers: allocator settings, the import-time collector pause, the fast exit, a light entry."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from foldtrain import process

REPO = Path(__file__).resolve().parents[1]


def test_keep_freed_memory_applies_on_glibc():
    applied = process.keep_freed_memory()
    assert applied == sys.platform.startswith("linux")


def test_loading_without_gc_pauses_then_freezes():
    frozen_before = gc.get_freeze_count()
    with process.loading_without_gc():
        assert not gc.isenabled()
        keep = [[i] for i in range(1000)]  # container objects the collector tracks
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(keep)
    gc.unfreeze()


def test_loading_without_gc_reenables_after_an_error():
    try:
        with process.loading_without_gc():
            raise ImportError("a module failed to load")
    except ImportError:
        pass
    assert gc.isenabled()
    gc.unfreeze()


def test_exit_now_flushes_output_and_keeps_the_status(tmp_path: Path):
    script = tmp_path / "exits.py"
    script.write_text(
        "import logging, sys\n"
        "from foldtrain.process import exit_now\n"
        "logging.basicConfig(stream=open(sys.argv[1], 'w'), level=logging.INFO)\n"
        "logging.getLogger('x').info('logged before exit')\n"
        "sys.stdout.write('printed without a newline')\n"
        "exit_now(3)\n"
        "print('never reached')\n")
    log_file = tmp_path / "log.txt"
    result = subprocess.run([sys.executable, str(script), str(log_file)], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 3
    assert result.stdout == "printed without a newline"
    assert "logged before exit" in log_file.read_text()


def test_config_errors_answer_before_torch_is_imported():
    # The entry parses the config before its heavy imports, so a typo costs no seconds of loading.
    code = ("import sys\n"
            "from foldtrain import main\n"
            "status = main.main(['train.epochz=3'])\n"
            "assert status == 2, status\n"
            "assert 'torch' not in sys.modules and 'mlflow' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "train.epochz" in result.stderr
