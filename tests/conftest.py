"""Shared fixtures. The CI-sized pipeline run is made once per test session (once per xdist
worker): the pipeline's own tests, the export tests that read its artifacts and the tests of
`adcsr upscale` on exported artifacts all read it, and all of them run on one worker (see
`pytest_collection_modifyitems`). Tests that export a student themselves to check mechanics use
`small_student` (the `micro` preset), so they do not wait for the pipeline's export. Every test starts from the same global RNG state and gives
it back as it found it, so no test depends on which ran before."""

import os

# Under pytest-xdist (`-n 2`, .ci/run) each worker gets its share of the cores (1 of 2) before
# torch starts its thread pool, and the processes the tests spawn (export jobs, HTP-emulator
# sessions, CLI runs) inherit it: two workers each running a thread per core oversubscribe a
# 2-core machine, which slows torch down many times over. An explicit OMP_NUM_THREADS is kept.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

CI_PIPELINE = {
    "stage0": {"trainer": {"steps": 20, "batch_size": 2, "checkpoint_every": 10, "eval_every": 10},
               "data": {"hr_size": 64}},
    "stage1": {"adv_start": 10, "trainer": {"steps": 20, "batch_size": 2, "checkpoint_every": 10, "eval_every": 10},
               "data": {"hr_size": 64}},
    "stage2": {"trainer": {"steps": 10, "batch_size": 2, "checkpoint_every": 5, "eval_every": 5},
               "data": {"hr_size": 64}},
    "export": {"options": {"tile": 16, "calibration_count": 4, "eval_count": 2, "jobs": 3}},
    "report": {"photos": 2, "lr_size": 48, "bench_repeats": 1, "bench_lr_size": 32},
}

# xdist groups named after the session fixtures whose users they gather, first match wins
SHARED_GROUPS = ("pipeline_run",)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """With `--dist loadgroup`, expensive shared fixtures are built once: every test that uses the
    pipeline run (in whichever module) joins one group, and every other test that uses a
    module-scoped fixture its module's group; each group runs on one worker. xdist hands out the
    groups with most tests first and the single tests last, so the long pipeline group (minutes
    of exports) starts early. The other tests go to whichever worker is free."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        group = next((g for g in SHARED_GROUPS if g in item.fixturenames), None)
        if group is None and info is not None and any(
                defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            group = item.nodeid.split("::")[0]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config):
    """xdist's workers tell the scheduler a test's group by a `@group` suffix on its node id; from
    pytest 9.2 on, pytest-xdist 3.8's suffix no longer takes (pytest-xdist issue 1386, hence
    `pytest<9.2` in the `test` extra): every test would be scheduled alone and the pipeline run
    built on both workers. Stop with one line rather than run a suite that no longer fits its time."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    import xdist

    def version(text):
        return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())

    if version(pytest.__version__) >= (9, 2) and version(xdist.__version__) <= (3, 8):
        raise pytest.UsageError(f"--dist loadgroup does not group tests with pytest {pytest.__version__} and "
                                f"pytest-xdist {xdist.__version__} (pytest-xdist issue 1386): "
                                "pip install -e '.[test]' (it pins pytest<9.2)")


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """(config, run folder, stage manifests, log lines) of one CI-sized `adcsr pipeline` run."""
    from adcsr.pipeline import load_pipeline_config, run_pipeline

    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    cfg = load_pipeline_config({**CI_PIPELINE, "run_dir": str(run_dir)})
    logs: list[str] = []
    manifests = run_pipeline(cfg, log=logs.append)
    return cfg, run_dir, manifests, logs


@pytest.fixture(scope="session")
def exported(pipeline_run):
    """{output name: folder} of the CI pipeline's export stage (every target, for its trained student)."""
    _, run_dir, manifests, _ = pipeline_run
    return {k: run_dir / "export" / v["path"] for k, v in manifests["export"]["outputs"].items()}


@pytest.fixture(scope="session")
def pipeline_student(pipeline_run):
    """The pipeline run's stage-2 student folder: the student its exported artifacts were made from."""
    _, run_dir, manifests, _ = pipeline_run
    return run_dir / "stage2" / manifests["stage2"]["outputs"]["student"]["path"]


@pytest.fixture(autouse=True)
def isolated_rng():
    """Global torch / numpy / random RNG seeded to 0 for the test, then restored."""
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
    torch.set_rng_state(saved[0])
    np.random.set_state(saved[1])
    random.setstate(saved[2])


@pytest.fixture(scope="session")
def small_student(tmp_path_factory):
    """The `micro` student preset (57 k parameters, random weights) saved as a folder: a real
    student of the real class, for tests that export one or fault an export and need seconds."""
    from adcsr.core.models.student import AdcSRStudent

    folder = tmp_path_factory.mktemp("small") / "student"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        AdcSRStudent.from_preset("micro").save_pretrained(folder)
    return folder
