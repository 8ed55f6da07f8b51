"""Loading a config, a checkpoint or an embedding never runs code from the file: a YAML with a
Python tag and pickles carrying a payload are refused with one line, and the payload never runs."""

from __future__ import annotations

import os
import pickle

import pytest

from adcsr.cli import main
from adcsr.core.errors import UserError


class _Payload:
    """Unpickling this would create the marker file (what a malicious checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_pickle(path, marker):
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    return path


def test_a_yaml_config_with_a_python_tag_is_refused(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'run_dir: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert main(["distill", "stage0", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not valid YAML" in err[0]
    assert not marker.exists()


def test_a_pickled_payload_in_a_release_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    bad = _malicious_pickle(tmp_path / "net_params_200.pkl", marker)
    assert main(["import-release", str(bad), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights-only loader refuses" in err[0]
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_pickled_payloads_in_teacher_checkpoints_and_embeddings_are_refused(tmp_path):
    from adcsr.core.models.teachers.osediff import read_checkpoint
    from adcsr.core.models.teachers.tsdsr import read_embedding

    marker = tmp_path / "PWNED"
    bad = _malicious_pickle(tmp_path / "osediff.pkl", marker)
    with pytest.raises(UserError, match="cannot read OSEDiff checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(UserError, match="cannot read the prompt embedding"):
        read_embedding(bad, (1, -1, 64), "prompt embedding")
    assert not marker.exists()
