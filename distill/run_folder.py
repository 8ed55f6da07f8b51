"""What every stage run shares: its folder, its saved config, the final model and the manifest.

A run folder holds `config.yaml`, `checkpoints/`, `tensorboard/`, `metrics.json`, the final model
(diffusers `save_pretrained` folder) and `manifest.json` (written last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from adcsr.core.atomic import atomic_dir
from adcsr.core.config import config_to_dict, save_config
from adcsr.core.errors import UserError
from adcsr.core.manifest import sha256_tree, size_on_disk, write_manifest

from .trainer import Trainer


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{where}.{k}" if where else k)
        return out
    return [] if old == new else [where]


def open_run(cfg: Any, resume: bool) -> Path:
    """Create the run folder and save the config; on resume, refuse a config that changed
    anything but `trainer.steps` (a longer or shorter run is fine, other changes are not)."""
    run_dir = Path(cfg.run_dir)
    saved = run_dir / "config.yaml"
    if resume and saved.is_file():
        old = yaml.safe_load(saved.read_text())
        new = yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))
        diff = [d for d in _differences(old, new) if d != "trainer.steps"]
        if diff:
            raise UserError(f"cannot resume {run_dir}: config differs from its saved config.yaml at {diff[0]}")
    elif not resume and (run_dir / "manifest.json").exists():
        raise UserError(f"{run_dir} holds a finished run: pick a new run_dir or resume it (--resume)")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, saved)
    return run_dir


def fit_run(cfg: Any, resume: bool, make_task: Callable[[Any], Any], name: str) -> tuple[Path, Trainer]:
    """What every trainer does between checking its config and saving its model: open the run
    folder, build the task from `cfg` and train it (from the newest good checkpoint on resume)."""
    run_dir = open_run(cfg, resume)
    trainer = Trainer(cfg.trainer, run_dir, lambda: make_task(cfg), name=name)
    trainer.fit(resume=resume)
    return run_dir, trainer


def finish_run(trainer: Trainer, run_dir: Path, out_name: str, save: Callable[[Path], None],
               stage: str, **fields: Any) -> Path:
    """Write the final model folder (through `save(tmp_folder)`) and the manifest, main process only."""
    out = run_dir / out_name
    if trainer.acc.is_main_process:
        with atomic_dir(out, overwrite=True) as tmp:
            save(tmp)
        write_manifest(
            run_dir / "manifest.json", stage=stage, output=str(out), output_sha256=sha256_tree(out),
            output_bytes=size_on_disk(out), steps=trainer.step, processes=trainer.world,
            device=str(trainer.acc.device), mixed_precision=trainer.acc.mixed_precision,
            resumed_from=trainer.resumed_from, config=str(run_dir / "config.yaml"),
            eval=trainer.history, **fields,
        )
    trainer.acc.wait_for_everyone()
    return out
