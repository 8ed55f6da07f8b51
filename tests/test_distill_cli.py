"""`adcsr distill …`: bad configs are one line and exit 2; the example configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adcsr.cli import main
from adcsr.core.config import PLACEHOLDER, load_config
from adcsr.distill import METHODS
from adcsr.distill.dfosd import DFOSDConfig
from adcsr.distill.stage0 import Stage0Config
from adcsr.distill.tsdsr import TSDSRConfig
from adcsr.distill.stage1 import Stage1Config
from adcsr.distill.stage2 import Stage2Config
from adcsr.distill.tadsr import TADSRConfig

CONFIGS = Path(__file__).resolve().parents[1] / "distill" / "configs"
KIND = {"stage0": Stage0Config, "stage1": Stage1Config, "stage2": Stage2Config, "dfosd": DFOSDConfig, "tsdsr": TSDSRConfig,
        "tadsr": TADSRConfig}
COMMAND = {m: ["train", m] for m in METHODS}  # the baselines' own objectives; the stages are `distill STAGE`


@pytest.mark.parametrize("text, words", [
    ("trainer: {steps: ten}\n", "trainer.steps: expected an integer"),
    ("lr: 0.1\nlearning_rate: 2\n", "unknown key 'learning_rate'"),
    ("vae: /no/such/folder\n", "vae: file not found"),
    ("data: {degradation: {scale: 0}}\n", "scale"),
    ("distill_level: latent\n", "distill_level: must be one of"),
    ("- a\n- b\n", "mapping"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["distill", "stage2", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_stage1_without_a_vae_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\n")
    assert main(["distill", "stage1", str(cfg)]) == 2
    assert "stage0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["distill", "stage2", str(cfg)]) == 2
    assert "stage1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path, tmp_path):
    data = yaml.safe_load(path.read_text())

    def local(v):  # placeholders and earlier stages' outputs → an existing folder
        if isinstance(v, dict):
            return {k: local(x) for k, x in v.items()}
        return str(tmp_path) if isinstance(v, str) and (v.startswith("/path/to") or v.startswith("runs/")) else v

    cfg = load_config(KIND[path.name.split("-")[0]], local(data))
    assert cfg.trainer.batch_size % cfg.trainer.grad_accum == 0


def _placeholders(data, where=""):
    """(dotted key, value) of every placeholder path in a config."""
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in _placeholders(v, f"{where}.{k}" if where else k)]
    return [(where, data)] if isinstance(data, str) and data.startswith(PLACEHOLDER) else []


def _fill(data, keep: str, path: str, where=""):
    """Every placeholder but the one at `keep` replaced by an existing path."""
    if isinstance(data, dict):
        return {k: _fill(v, keep, path, f"{where}.{k}" if where else k) for k, v in data.items()}
    return path if where != keep and _placeholders(data, where) else data


FULL = [(p, key) for p in sorted(CONFIGS.glob("*-full.yaml")) for key, _ in _placeholders(yaml.safe_load(p.read_text()))]


@pytest.mark.parametrize("path, key", FULL, ids=[f"{p.name}:{k}" for p, k in FULL])
def test_a_placeholder_left_in_is_one_line_naming_its_key(path, key, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, not even the run folder
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_fill(yaml.safe_load(path.read_text()), key, str(tmp_path))))
    kind = path.name.split("-")[0]
    assert main([*COMMAND.get(kind, ["distill", kind]), str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{key}: /path/to/" in err and "placeholder" in err and "\n" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]
