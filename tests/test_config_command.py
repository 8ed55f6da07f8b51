"""Shipped configs by name: `adcsr config list|show|dump`, and a name wherever a config path goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from adcsr.cli import main
from adcsr.config_command import resolve, shipped
from adcsr.core.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_every_yaml_config_in_the_package_has_a_name():
    on_disk = {p.resolve() for d in ("adcsr/configs", "distill/configs", "export/configs")
               for p in (REPO / d).glob("*.yaml")}
    assert {p.resolve() for p in shipped().values()} == on_disk
    assert shipped()["export-default"].name == "default.yaml"


def test_list_and_show_and_dump(capsys):
    assert main(["config", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("pipeline", "pipeline-quality", "stage2-full", "export-default"))
    for action in ("show", "dump"):
        assert main(["config", action, "pipeline-quality"]) == 0
        assert capsys.readouterr().out == (REPO / "adcsr/configs/pipeline-quality.yaml").read_text()
    assert main(["config", "show", "nope"]) == 2
    assert "shipped: " in capsys.readouterr().err


def test_a_name_stands_for_its_file_and_an_existing_path_wins(tmp_path, monkeypatch):
    assert Path(resolve("stage1-ci")) == REPO / "distill/configs/stage1-ci.yaml"
    assert resolve(None) is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline").write_text("seed: 1\n")
    assert resolve("pipeline") == "pipeline"  # a file of that name in the working folder
    with pytest.raises(UserError, match="config file not found: missing.yaml"):
        resolve("missing.yaml")


def test_a_command_given_an_unknown_name_says_which_names_exist(capsys):
    assert main(["distill", "stage0", "stage0-cl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adcsr distill: error: no config file or shipped config named 'stage0-cl'")
    assert "stage0-ci" in err
