"""A resumable chain of stages, one folder each, with a manifest written last.

A stage is complete when `<run>/<stage>/manifest.json` exists, its fingerprint (a digest of the
stage's settings and of every input it reads, upstream outputs included) matches the current
one, and every output it lists still has the recorded sha256. A complete stage is skipped; the
first stage that is not complete, and every stage after it, runs again. The manifest is written
only after the stage finished, so a killed or failed stage never looks done.

A stage that starts records its fingerprint in `started.json`. When it runs again with the same
fingerprint (it was killed, or failed), its function is told to resume; with a different one, or
when forced with `start`/`only`, the stage folder is emptied first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from adcsr.core.atomic import atomic_write_text
from adcsr.core.errors import UserError, disk_full, disk_full_message
from adcsr.core.manifest import read_manifest, sha256_tree, write_manifest


class StageFailed(Exception):
    """A stage raised: carries the stage's name and the one-line cause."""

    def __init__(self, stage: str, cause: BaseException):
        self.stage = stage
        self.cause = cause
        if disk_full(cause):
            first = disk_full_message(cause)
        else:
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if len(first) > 300:
            first = first[:300] + " …"
        super().__init__(f"stage '{stage}' failed: {first}")


@dataclass
class StageContext:
    """What a stage's function gets: its folder and the upstream outputs."""

    name: str
    dir: Path
    inputs: dict[str, Path]  # "<stage>.<output>" -> path, for every output of the stages it needs
    resume: bool = False  # an earlier attempt with the same fingerprint was interrupted: continue it

    def input(self, key: str) -> Path:
        return self.inputs[key]


@dataclass
class Stage:
    name: str
    run: Callable[[StageContext], dict[str, Path]]  # returns {output name: a path inside ctx.dir}
    settings: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    external_inputs: tuple[Path, ...] = ()  # files/folders outside the run that it reads


def _fingerprint(stage: Stage, upstream: dict[str, str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(stage.settings, sort_keys=True, default=str).encode())
    h.update(json.dumps(upstream, sort_keys=True).encode())
    for p in stage.external_inputs:
        h.update(str(p).encode())
        h.update(sha256_tree(p).encode() if Path(p).exists() else b"missing")
    return h.hexdigest()


def _is_complete(stage_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = read_manifest(path)
    except UserError:
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    for out in manifest.get("outputs", {}).values():
        p = stage_dir / out["path"]
        if not p.exists() or sha256_tree(p) != out["sha256"]:
            return None
    return manifest


class Pipeline:
    def __init__(self, run_dir: str | Path, stages: list[Stage]):
        self.run_dir = Path(run_dir)
        self.stages = stages
        self.by_name = {s.name: s for s in stages}
        for s in stages:
            for need in s.needs:
                if need not in self.by_name or stages.index(self.by_name[need]) >= stages.index(s):
                    raise ValueError(f"stage {s.name!r} needs {need!r}, which must come before it")

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def run(self, start: str | None = None, only: str | None = None,
            log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
        """Run the chain; returns each stage's manifest. `start`/`only` force stages to rerun."""
        for name in (start, only):
            if name is not None and name not in self.by_name:
                raise UserError(f"unknown stage {name!r} (stages: {', '.join(self.names())})")
        manifests: dict[str, dict[str, Any]] = {}
        rerun_from = self.names().index(start) if start else None
        dirty = False
        for index, stage in enumerate(self.stages):
            stage_dir = self.run_dir / stage.name
            upstream = {}
            if only is not None and stage.name != only and not all(
                    need in manifests or (self.run_dir / need / "manifest.json").is_file() for need in stage.needs):
                continue  # `--only` one stage: a later stage whose inputs were never made is not looked at
            for need in stage.needs:
                if need not in manifests:
                    manifests[need] = self._require_complete(need)
                for key, out in manifests[need]["outputs"].items():
                    upstream[f"{need}.{key}"] = out["sha256"]
            fingerprint = _fingerprint(stage, upstream)
            if only is not None and stage.name != only:
                done = _is_complete(stage_dir, fingerprint)
                if done is not None:
                    manifests[stage.name] = done
                continue
            forced = only == stage.name or (rerun_from is not None and index >= rerun_from)
            done = None if (forced or dirty) else _is_complete(stage_dir, fingerprint)
            if done is not None:
                log(f"[{stage.name}] up to date, skipped")
                manifests[stage.name] = done
                continue
            dirty = True
            manifests[stage.name] = self._run_stage(stage, stage_dir, fingerprint, manifests, forced, log)
        return manifests

    def _require_complete(self, name: str) -> dict[str, Any]:
        path = self.run_dir / name / "manifest.json"
        if not path.is_file():
            raise UserError(f"stage {name!r} has not completed in {self.run_dir}; run it first")
        return read_manifest(path)

    def _run_stage(self, stage: Stage, stage_dir: Path, fingerprint: str, manifests: dict[str, dict[str, Any]],
                   forced: bool, log: Callable[[str], None]) -> dict[str, Any]:
        started = stage_dir / "started.json"
        resume = not forced and started.is_file() and json.loads(started.read_text()).get("fingerprint") == fingerprint
        if not resume and stage_dir.exists():
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "manifest.json").unlink(missing_ok=True)  # not complete until written again
        atomic_write_text(started, json.dumps({"fingerprint": fingerprint}) + "\n")
        inputs = {
            f"{need}.{key}": self.run_dir / need / out["path"]
            for need in stage.needs
            for key, out in manifests[need]["outputs"].items()
        }
        ctx = StageContext(stage.name, stage_dir, inputs, resume)
        log(f"[{stage.name}] {'resuming' if resume else 'running'}")
        start = time.perf_counter()
        try:
            outputs = stage.run(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - reported as one line naming the stage
            raise StageFailed(stage.name, e) from e
        seconds = time.perf_counter() - start
        recorded = {}
        for key, path in outputs.items():  # absolute, or relative to the working directory
            rel = Path(path).resolve().relative_to(stage_dir.resolve())
            recorded[key] = {"path": str(rel), "sha256": sha256_tree(stage_dir / rel)}
        manifest = write_manifest(
            stage_dir / "manifest.json",
            stage=stage.name,
            fingerprint=fingerprint,
            seconds=round(seconds, 2),
            settings=stage.settings,
            inputs={k: {"path": str(v), "sha256": manifests[k.split(".")[0]]["outputs"][k.split(".", 1)[1]]["sha256"]}
                    for k, v in inputs.items()},
            external_inputs={str(p): sha256_tree(p) for p in stage.external_inputs if Path(p).exists()},
            outputs=recorded,
        )
        log(f"[{stage.name}] done in {seconds:.1f} s")
        return manifest

