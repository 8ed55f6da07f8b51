"""Packaging and layering: one `adcsr` namespace in regular and editable installs, layers point down."""

import ast
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]
SUBPACKAGES = [
    "adcsr", "adcsr.core", "adcsr.core.models", "adcsr.core.models.teachers", "adcsr.core.metrics",
    "adcsr.compress", "adcsr.distill", "adcsr.export", "adcsr.hub",
]
STAGES = ("adcsr.compress", "adcsr.distill", "adcsr.export", "adcsr.hub")
FORBIDDEN_TOP_LEVEL = ("core", "compress", "distill", "export", "hub")

# Imports every subpackage and prints where each came from, plus what the bare names resolve to.
PROBE = """
import importlib, importlib.metadata, importlib.util, json, sys
sys.path.insert(0, sys.argv[1]) if len(sys.argv) > 1 else None
direct_url = json.loads(importlib.metadata.distribution("adcsr-mobile").read_text("direct_url.json") or "{}")
out = {"files": {}, "bare": {}, "editable": bool(direct_url.get("dir_info", {}).get("editable"))}
for name in %r:
    out["files"][name] = importlib.import_module(name).__file__
for name in %r:
    spec = importlib.util.find_spec(name)
    out["bare"][name] = spec.origin if spec else None
print(json.dumps(out))
""" % (SUBPACKAGES, FORBIDDEN_TOP_LEVEL)


def folder_packages() -> dict[str, Path]:
    """Every folder holding an __init__.py under the mapped roots, as its import name."""
    found = {}
    for pkg, folder in PACKAGE_DIR.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" in rel or any(p.startswith(".") for p in rel):
                continue
            found[".".join((pkg, *rel))] = init.parent
    return found


def test_every_package_folder_is_listed_in_pyproject():
    found = folder_packages()
    assert set(SUBPACKAGES) <= set(found)
    missing = sorted(set(found) - set(PACKAGES))
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(set(PACKAGES) - set(found))
    assert not stale, f"listed in pyproject.toml but no folder with __init__.py: {stale}"
    assert all(p == "adcsr" or p.startswith("adcsr.") for p in PACKAGES)


def module_name(path: Path) -> str:
    for pkg, folder in sorted(PACKAGE_DIR.items(), key=lambda kv: -len(kv[1])):
        root = REPO / folder
        if path.is_relative_to(root):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            return ".".join((pkg, *parts))
    raise AssertionError(path)


def imported_names(path: Path) -> set[str]:
    """Absolute names of everything a module imports, anywhere in it (lazy imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)  # `from adcsr import upscale`
    return names


def layer(name: str) -> str:
    for prefix in ("adcsr.core", *STAGES):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return "app" if name == "adcsr" or name.startswith("adcsr.") else "external"


def layer_violations() -> list[str]:
    bad = []
    for folder in PACKAGE_DIR.values():
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            here = layer(module_name(path))
            for imp in sorted(imported_names(path)):
                there = layer(imp)
                if imp == "adcsr" and here != "app":
                    there = "app"
                if imp.split(".")[0] in FORBIDDEN_TOP_LEVEL and (REPO / imp.split(".")[0]).is_dir():
                    bad.append(f"{path.relative_to(REPO)} imports the folder name {imp}; use adcsr.*")
                elif here == "adcsr.core" and there not in ("adcsr.core", "external"):
                    bad.append(f"{path.relative_to(REPO)} (core) imports {imp}")
                elif here in STAGES and there not in (here, "adcsr.core", "external"):
                    bad.append(f"{path.relative_to(REPO)} ({here}) imports {imp}")
    return bad


def test_layers_point_down():
    assert not layer_violations()


def test_layer_check_sees_violations(tmp_path, monkeypatch):
    """The checker flags a stage importing another stage and core importing upwards."""
    names = {"distill": "from adcsr.export import onnx_export\n", "core": "from ...distill import trainer\n"}
    for folder, text in names.items():
        (tmp_path / folder / "sub").mkdir(parents=True)
        (tmp_path / folder / "__init__.py").write_text("")
        (tmp_path / folder / "sub" / "__init__.py").write_text("")
        (tmp_path / folder / "sub" / "bad.py").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", {"adcsr.core": "core", "adcsr.distill": "distill"})
    bad = layer_violations()
    assert any("distill/sub/bad.py (adcsr.distill) imports adcsr.export" in b for b in bad)
    assert any("core/sub/bad.py (core) imports adcsr.distill" in b for b in bad)
    assert {b.split(" ")[0] for b in bad} == {"core/sub/bad.py", "distill/sub/bad.py"}


def probe(cwd: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *extra], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_editable_install_imports_every_subpackage(tmp_path):
    out = probe(tmp_path)  # run outside the checkout so the folders are not on sys.path
    assert out["editable"], "the venv should hold the editable install (pip install -e .)"
    for name, file in out["files"].items():
        folder = PACKAGE_DIR[layer(name) if layer(name) != "app" else "adcsr"]
        assert Path(file).resolve().is_relative_to(REPO / folder), (name, file)
    for bare, origin in out["bare"].items():
        assert origin is None or not Path(origin).resolve().is_relative_to(REPO), (bare, origin)


@pytest.mark.slow
def test_regular_install_imports_every_subpackage(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in PACKAGE_DIR.values():
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    top = {p.name for p in target.iterdir() if p.name != "bin"}
    assert top == {"adcsr", "adcsr_mobile-0.1.0.dist-info"}, top  # no top-level core/compress/export
    assert (target / "adcsr" / "core" / "__init__.py").is_file()
    assert (target / "adcsr" / "configs" / "degradation.yaml").is_file()  # package data travels
    record = (target / "adcsr_mobile-0.1.0.dist-info" / "RECORD").read_text().splitlines()
    assert all(line.startswith(("adcsr/", "adcsr_mobile-0.1.0.dist-info/", "../", "bin/")) for line in record)
    out = probe(tmp_path, str(target))
    assert not out["editable"]
    for name, file in out["files"].items():
        assert Path(file).resolve().is_relative_to(target), (name, file)


def test_each_stage_face_resolves_what_it_lists_and_the_cli_loads_no_stage():
    code = (
        "import importlib, sys\n"
        "import adcsr.cli\n"
        "adcsr.cli.build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[:2] in (['adcsr', 'compress'], ['adcsr', 'distill'], ['adcsr', 'export'], ['adcsr', 'hub']))\n"
        "assert all(m.rsplit('.', 1)[-1] in ('compress', 'distill', 'export', 'hub', 'cli', 'config', 'thresholds') for m in loaded), loaded\n"
        "assert 'diffusers' not in sys.modules\n"
        "assert 'qai_hub' not in sys.modules\n"
        "for name in ('adcsr.compress', 'adcsr.distill', 'adcsr.export', 'adcsr.hub'):\n"
        "    face = importlib.import_module(name)\n"
        "    missing = [n for n in face.__all__ if getattr(face, n, None) is None]\n"
        "    assert face.__all__ and not missing, (name, missing)\n"
        "from adcsr.distill import CONFIGS, STAGES\n"
        "assert set(STAGES) == set(CONFIGS) == {'stage0', 'stage1', 'stage2'}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
