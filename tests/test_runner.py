import json
from pathlib import Path

import pytest

from adcsr.core.errors import UserError
from adcsr.runner import Pipeline, Stage, StageFailed


def _chain(tmp_path, calls, settings_b=None, fail_c=False):
    def a(ctx):
        calls.append("a")
        (ctx.dir / "a.txt").write_text("alpha")
        return {"text": ctx.dir / "a.txt"}

    def b(ctx):
        calls.append("b")
        (ctx.dir / "b.txt").write_text(ctx.input("a.text").read_text() + "+beta")
        return {"text": ctx.dir / "b.txt"}

    def c(ctx):
        calls.append("c")
        if fail_c:
            raise RuntimeError("disk on fire\nsecond line")
        (ctx.dir / "c.txt").write_text(ctx.input("b.text").read_text() + "+gamma")
        return {"text": ctx.dir / "c.txt"}

    return Pipeline(tmp_path / "run", [
        Stage("a", a),
        Stage("b", b, settings=settings_b or {"x": 1}, needs=("a",)),
        Stage("c", c, needs=("b",)),
    ])


def test_second_run_skips_finished_stages(tmp_path):
    calls = []
    _chain(tmp_path, calls).run(log=lambda m: None)
    assert calls == ["a", "b", "c"]
    assert (tmp_path / "run/c/c.txt").read_text() == "alpha+beta+gamma"
    _chain(tmp_path, calls).run(log=lambda m: None)
    assert calls == ["a", "b", "c"]


def test_changed_settings_rerun_that_stage_and_later(tmp_path):
    calls = []
    _chain(tmp_path, calls).run(log=lambda m: None)
    calls.clear()
    _chain(tmp_path, calls, settings_b={"x": 2}).run(log=lambda m: None)
    assert calls == ["b", "c"]


def test_missing_or_modified_output_reruns(tmp_path):
    calls = []
    _chain(tmp_path, calls).run(log=lambda m: None)
    calls.clear()
    (tmp_path / "run/b/b.txt").write_text("tampered")
    _chain(tmp_path, calls).run(log=lambda m: None)
    assert calls == ["b", "c"]
    assert (tmp_path / "run/c/c.txt").read_text() == "alpha+beta+gamma"


def test_from_and_only(tmp_path):
    calls = []
    _chain(tmp_path, calls).run(log=lambda m: None)
    calls.clear()
    _chain(tmp_path, calls).run(start="b", log=lambda m: None)
    assert calls == ["b", "c"]
    calls.clear()
    _chain(tmp_path, calls).run(only="b", log=lambda m: None)
    assert calls == ["b"]
    with pytest.raises(UserError, match="unknown stage 'z'"):
        _chain(tmp_path, calls).run(only="z", log=lambda m: None)


def test_only_stage_by_stage_on_a_fresh_run(tmp_path):
    """`--only` each stage in turn builds a new run: later stages, never run yet, are not asked for."""
    calls = []
    for name in ("a", "b", "c"):
        _chain(tmp_path, calls).run(only=name, log=lambda m: None)
    assert calls == ["a", "b", "c"]
    with pytest.raises(UserError, match="stage 'b' has not completed"):
        _chain(tmp_path / "other", calls).run(only="c", log=lambda m: None)


def test_failed_stage_keeps_earlier_ones_and_is_not_marked_done(tmp_path):
    calls = []
    _chain(tmp_path, calls).run(log=lambda m: None)
    with pytest.raises(StageFailed, match=r"^stage 'c' failed: disk on fire$"):
        _chain(tmp_path, calls, fail_c=True).run(start="c", log=lambda m: None)
    assert not (tmp_path / "run/c/manifest.json").exists()
    manifest = json.loads((tmp_path / "run/b/manifest.json").read_text())
    assert manifest["outputs"]["text"]["path"] == "b.txt"
    calls.clear()
    _chain(tmp_path, calls).run(log=lambda m: None)
    assert calls == ["c"]


def test_interrupted_stage_resumes_changed_stage_starts_clean(tmp_path):
    seen = []

    def work(ctx):
        seen.append(ctx.resume)
        marker = ctx.dir / "partial"
        if not marker.exists():
            marker.write_text("half")
            raise RuntimeError("killed")
        (ctx.dir / "done.txt").write_text("ok")
        return {"done": ctx.dir / "done.txt"}

    def pipeline(x):
        return Pipeline(tmp_path / "run", [Stage("w", work, settings={"x": x})])

    with pytest.raises(StageFailed):
        pipeline(1).run(log=lambda m: None)
    pipeline(1).run(log=lambda m: None)  # same fingerprint: resumes and keeps its partial state
    assert seen == [False, True]
    seen.clear()
    with pytest.raises(StageFailed):  # new settings: the old partial state is wiped first
        pipeline(2).run(log=lambda m: None)
    assert seen == [False]


def test_relative_run_folder_and_relative_output_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def work(ctx):
        (ctx.dir / "out.txt").write_text("x")
        return {"out": Path("runs") / "r" / "w" / "out.txt"}  # relative to the working directory

    manifests = Pipeline(Path("runs") / "r", [Stage("w", work)]).run(log=lambda m: None)
    assert manifests["w"]["outputs"]["out"]["path"] == "out.txt"
    assert Pipeline(Path("runs") / "r", [Stage("w", work)]).run(log=lambda m: None)["w"] == manifests["w"]
