"""One process per run folder: a second pipeline or training run on a folder in use is refused at
once naming the holder, and a holder killed with SIGKILL leaves nothing stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from adcsr.cli import main
from adcsr.core.errors import UserError
from adcsr.core.run_lock import run_lock

HOLD = ("import sys, time\nfrom adcsr.core.run_lock import run_lock\n"
        "with run_lock(sys.argv[1], 'pipeline'):\n    print('held', flush=True)\n    time.sleep(120)\n")


@pytest.fixture
def held(tmp_path):
    """A folder whose lock another process holds (killed with SIGKILL at the end)."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_a_second_pipeline_on_a_folder_in_use_is_refused_naming_the_holder(held, capsys):
    folder, proc = held
    assert main(["pipeline", "--run-dir", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is in use by a pipeline, process {proc.pid}" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing was written


def test_a_training_run_on_a_folder_in_use_is_refused(held, tmp_path):
    from adcsr.distill.stage0 import train_autoencoder

    folder, proc = held
    cfg = {"run_dir": str(folder), "preset": "tiny", "trainer": {"steps": 1, "batch_size": 1, "progress": False}}
    with pytest.raises(UserError, match=f"in use by a pipeline, process {proc.pid}"):
        train_autoencoder(cfg)


def test_a_killed_holder_leaves_nothing_stuck(held):
    folder, proc = held
    with pytest.raises(UserError):
        with run_lock(folder):
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    start = time.monotonic()
    with run_lock(folder) as path:
        assert str(os.getpid()) in path.read_text()
    assert time.monotonic() - start < 1.0
