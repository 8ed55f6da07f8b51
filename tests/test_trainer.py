"""The trainer's hard guarantees, on a tiny two-optimizer (GAN-shaped) task:
kill -9 + resume is bit-exact, a corrupted newest checkpoint falls back to the previous good one,
2-process gloo data parallel equals 1 process with the same global batch (on stage 2 as well).

Run as a script (`python tests/test_trainer.py RUN_DIR STEPS [--resume]`) it trains the toy task,
which is how the subprocess tests start it (plain and under torchrun).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from adcsr.core.config import load_config
from adcsr.core.errors import UserError
from adcsr.distill.checkpoint import CheckpointStore
from adcsr.distill.config import TrainerConfig
from adcsr.distill.task import Phase, Task
from adcsr.distill.trainer import Trainer

HERE = Path(__file__).resolve()
TOY = dict(steps=24, batch_size=4, checkpoint_every=3, keep_last=2, eval_every=8, log_every=4,
           schedule="halving", halve_every=10, ema_decay=0.9, progress=False, seed=7)


class ToyTask(Task):
    """G maps x to a target; D tells real targets from G's outputs (non-saturating losses)."""

    ema_module = "g"

    def __init__(self, sleep: float = 0.0):
        self.sleep = sleep
        self.g = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
        self.d = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.SiLU(), nn.Conv2d(4, 1, 3))
        self.target = nn.Conv2d(3, 3, 3, padding=1).requires_grad_(False)
        self.modules = {"g": self.g, "d": self.d}
        self.phases = [Phase("g", self.g_loss), Phase("d", self.d_loss)]

    def optimizers(self):
        return {"g": torch.optim.Adam(self.g.parameters(), 3e-3),
                "d": torch.optim.Adam(self.d.parameters(), 1e-3)}

    def batch(self, step, indices, device):
        if self.sleep:
            print(f"step {step}", flush=True)
            time.sleep(self.sleep)
        xs = [torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(1000 + i)) for i in indices]
        x = torch.stack(xs).to(device)
        return {"x": x, "y": self.target(x)}

    def g_loss(self, b, step):
        fake = self.g(b["x"])
        b["fake"] = fake.detach()
        l1 = (fake - b["y"]).abs().mean()
        adv = nn.functional.softplus(-self.d(fake)).mean()
        return l1 + 0.1 * adv, {"l1": l1.item(), "adv": adv.item()}

    def d_loss(self, b, step):
        loss = (nn.functional.softplus(self.d(b["fake"])).mean()
                + nn.functional.softplus(-self.d(b["y"])).mean())
        return loss, {"d": loss.item()}

    def evaluate(self, step):
        x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
        return {"l1": float((self.g(x) - self.target(x)).abs().mean())}, {"out": self.g(x).clamp(0, 1)}


def train(run_dir, resume=False, sleep=0.0, **kw) -> Trainer:
    cfg = load_config(TrainerConfig, {**TOY, **kw})
    tr = Trainer(cfg, run_dir, lambda: ToyTask(sleep))
    tr.fit(resume=resume)
    return tr


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n in ("g", "d")
            for k, v in load_file(str(folder / f"model-{n}.safetensors")).items()}


def last(run_dir: Path) -> Path:
    return CheckpointStore(run_dir / "checkpoints").folders()[-1]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def test_kill9_then_resume_is_bit_identical(tmp_path):
    # the reference runs in a fresh process too: an xdist worker's earlier tests can leave state
    # (allocations, thread pools) that moves float rounding; only the interruption may differ
    done = subprocess.run([sys.executable, str(HERE), str(tmp_path / "ref")], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ref_w = weights(last(tmp_path / "ref"))
    run = tmp_path / "killed"
    kill_at = random.Random(os.getpid()).randint(4, 17)
    p = subprocess.Popen([sys.executable, str(HERE), str(run), "--sleep", "0.05"], env=_env(),
                         stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("step ") and int(line.split()[1]) >= kill_at:
            p.send_signal(signal.SIGKILL)
            break
    p.wait()
    assert p.returncode == -signal.SIGKILL
    steps_done = [int(f.name[5:]) for f in CheckpointStore(run / "checkpoints").folders()]
    assert steps_done and max(steps_done) < TOY["steps"], "the run must really be interrupted"
    p = subprocess.run([sys.executable, str(HERE), str(run), "--resume"], env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = weights(last(run))
    assert got.keys() == ref_w.keys()
    for k in ref_w:
        assert torch.equal(got[k], ref_w[k]), f"{k} differs after kill at step {kill_at} + resume"
    # the EMA copy and the evaluation history came back too
    ema_got, ema_ref = (load_file(str(last(r) / "ema.safetensors")) for r in (run, tmp_path / "ref"))
    assert all(torch.equal(ema_got[k], ema_ref[k]) for k in ema_ref)
    assert json.loads((run / "metrics.json").read_text())["eval"] == \
        json.loads((tmp_path / "ref" / "metrics.json").read_text())["eval"]


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path, capfd):
    train(tmp_path / "ref", steps=9)
    ref9 = weights(last(tmp_path / "ref"))
    run = tmp_path / "run"
    train(run, steps=9)
    store = CheckpointStore(run / "checkpoints")
    assert [f.name for f in store.folders()] == ["step-00000006", "step-00000009"]
    newest = store.folders()[-1] / "model-g.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    assert store.problem(store.folders()[-1]) is not None
    assert store.latest_good().name == "step-00000006"
    assert "unusable" in capfd.readouterr().err
    # resuming continues from step 6 and redoes 7..9 exactly
    tr = train(run, steps=9, resume=True)
    assert tr.resumed_from.endswith("step-00000006")
    got = weights(last(run))
    assert all(torch.equal(got[k], ref9[k]) for k in ref9)
    # a flipped byte (same size) is caught as well
    f = last(run) / "optim-g.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    assert "sha256" in store.problem(last(run))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_equals_one_process(tmp_path):
    one = tmp_path / "one"
    train(one, steps=6, ema_decay=0.0, grad_accum=2)
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(HERE), str(two), "--steps", "6", "--accum", "1"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    a, b = weights(last(one)), weights(last(two))
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved < 1e-5, f"2 processes differ from 1 by {moved}"
    init = Trainer(load_config(TrainerConfig, {**TOY, "steps": 6}), tmp_path / "x", ToyTask).task
    change = max(float((a[f"g.{k}"] - v).abs().max()) for k, v in init.g.state_dict().items())
    assert change > 1e-3, "the weights must have trained for the comparison to mean anything"


def test_two_process_gloo_equals_one_process_on_stage2(tmp_path):
    """A real stage (stage 2: tiny student, LoRA-UNet discriminator, Real-ESRGAN compact teacher,
    degraded photo crops) through the CLI under torchrun: 2 processes × 2 samples per step end with
    the weights of 1 process × 4 (measured: bit-identical). The one process takes its 4 as 2
    micro-batches of 2 (as the toy test does) with one thread (as the subprocesses), so both runs
    compute the same micro-batches the same way: float rounding alone (one micro-batch of 4, or 2
    threads) moves weights by up to ~lr, since Adam's first steps scale every gradient element,
    near-zero ones too, to ±lr (measured 1.5e-3 and 5.9e-4)."""
    import yaml
    from diffusers import AutoencoderKL

    from adcsr.core.models.sd_configs import vae_config
    from adcsr.core.models.vae_decoder import PrunedVAEDecoder
    from adcsr.distill.stage2 import DistillTask, Stage2Config

    torch.manual_seed(0)
    AutoencoderKL(**vae_config("tiny")).save_pretrained(tmp_path / "vae")
    PrunedVAEDecoder.from_preset("tiny").save_pretrained(tmp_path / "decoder")
    section = dict(vae=str(tmp_path / "vae"), decoder=str(tmp_path / "decoder"), lr=1e-3, disc_lr=1e-3,
                   trainer=dict(steps=2, batch_size=4, checkpoint_every=2, eval_every=2, progress=False),
                   data=dict(hr_size=32, heldout_count=1, heldout_size=32))
    one_section = {**section, "run_dir": str(tmp_path / "one"), "trainer": {**section["trainer"], "grad_accum": 2}}
    cfg = load_config(Stage2Config, one_section)
    init = {k: v.clone() for k, v in Trainer(cfg.trainer, tmp_path / "x", lambda: DistillTask(cfg)).task.student.state_dict().items()}
    # the one-process run in a fresh process too: nothing an earlier test left in this one (thread
    # pools, compiled kernels, oneDNN state) may decide its float rounding
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(one_section))
    p = subprocess.run([sys.executable, "-m", "adcsr.cli", "distill", "stage2", str(tmp_path / "one.yaml")],
                       env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({**section, "run_dir": str(tmp_path / "two")}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "adcsr.cli", "distill", "stage2", str(tmp_path / "two.yaml")]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["processes"] == 2
    for name in ("student", "disc"):
        a, b = (load_file(str(last(tmp_path / r) / f"model-{name}.safetensors")) for r in ("one", "two"))
        assert a.keys() == b.keys()
        moved = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert moved < 1e-5, f"{name}: 2 processes differ from 1 by {moved}"
    a = load_file(str(last(tmp_path / "one") / "model-student.safetensors"))
    change = max(float((a[k] - init[k]).abs().max()) for k in a)
    assert change > 1e-3, "the weights must have trained for the comparison to mean anything"


def test_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 10\nbatch_sise: 4\n")
    with pytest.raises(UserError) as e:
        load_config(TrainerConfig, bad)
    assert "batch_sise" in str(e.value) and "\n" not in str(e.value)
    bad.write_text("steps: ten\n")
    with pytest.raises(UserError, match="steps: expected an integer"):
        load_config(TrainerConfig, bad)
    with pytest.raises(UserError, match="multiple of"):
        Trainer(load_config(TrainerConfig, {"batch_size": 3, "grad_accum": 2}), tmp_path / "r", ToyTask)


def test_refuses_to_restart_over_checkpoints_without_resume(tmp_path):
    train(tmp_path / "r", steps=3)
    with pytest.raises(UserError, match="--resume"):
        train(tmp_path / "r", steps=3)


def test_schedules_halve_and_anneal():
    from adcsr.distill.schedules import lr_schedule

    def lrs(**kw):
        cfg = load_config(TrainerConfig, {"steps": 40, **kw})
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, out = lr_schedule(opt, cfg), []
        for _ in range(40):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    halving = lrs(schedule="halving", halve_every=10)
    assert halving[9] == 1.0 and halving[10] == 0.5 and halving[39] == 0.125
    cosine = lrs(schedule="cosine")
    assert cosine[0] == 1.0 and all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 0.01
    warm = lrs(warmup_steps=4)
    assert warm[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=TOY["steps"])
    ap.add_argument("--accum", type=int, default=1)
    a = ap.parse_args()
    extra = {"ema_decay": 0.0} if a.steps != TOY["steps"] else {}
    train(a.run_dir, resume=a.resume, sleep=a.sleep, steps=a.steps, grad_accum=a.accum, **extra)


def test_with_ema_the_evaluation_measures_the_saved_ema_weights(tmp_path):
    tr = train(tmp_path / "run", steps=8, eval_every=8, checkpoint_every=8)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    final, live = tr.final_modules()["g"], tr.task.g
    assert final is not live
    with torch.no_grad():
        saved_l1 = float((final(x) - tr.task.target(x)).abs().mean())
        live_l1 = float((live(x) - tr.task.target(x)).abs().mean())
    assert tr.history[-1]["l1"] == saved_l1 != live_l1
