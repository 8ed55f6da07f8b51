"""The one trainer: data-parallel (accelerate), AMP, accumulation, EMA, schedules, exact resume.

A `Task` owns the models and the losses; the trainer owns the loop. Each step draws its samples
by global index (`step * batch_size + i`), so the data position is the step counter and the same
global batch is seen whatever the number of processes. A task lists `Phase`s (one per optimizer,
e.g. generator then discriminator); within a phase only that optimizer's parameters require grad.

Gradients are averaged across processes by one all-reduce per phase instead of wrapping models in
DDP: DDP's reducer expects one backward per forward per module, which GAN phases (generator loss
through a frozen discriminator, then the discriminator's own step) do not give. The result is the
same data-parallel update.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from adcsr.core.atomic import atomic_write_text
from adcsr.core.errors import UserError

from .checkpoint import CheckpointStore
from .config import TrainerConfig, check_batch
from .schedules import lr_schedule
from .task import Phase, Task
from .state_io import load_state, save_state

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def image_grid(images: torch.Tensor, columns: int = 4) -> torch.Tensor:
    """NCHW -> one CHW grid (written by hand: torchvision, which has make_grid, is not allowed)."""
    n, c, h, w = images.shape
    rows = (n + columns - 1) // columns
    grid = torch.ones(c, rows * h, columns * w)
    for i, img in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, col = divmod(i, columns)
        grid[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = img
    return grid


def _module_state(m: nn.Module) -> dict[str, torch.Tensor]:
    """A module's checkpointed tensors: all of them, or only the trained part when the module
    says so (a LoRA discriminator on a large frozen base rebuilt identically at start)."""
    return m.trainable_state_dict() if hasattr(m, "trainable_state_dict") else m.state_dict()


class Trainer:
    def __init__(self, cfg: TrainerConfig, run_dir: str | Path, build_task: Callable[[], Task],
                 name: str = "train"):
        from accelerate import Accelerator

        self.cfg, self.run_dir, self.name = cfg, Path(run_dir), name
        cpu = cfg.cpu or not torch.cuda.is_available()
        # AMP only on CUDA: CPU runs stay fp32 (and bit-reproducible)
        self.acc = Accelerator(cpu=cpu, mixed_precision="no" if cpu else cfg.mixed_precision)
        # what frozen networks that are not modules run in (teachers, as OSEDiff and AdcSR run theirs)
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.acc.mixed_precision, torch.float32)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        self.micro = check_batch(cfg, self.world)
        seed_everything(cfg.seed)  # identical initial weights on every process
        self.task = build_task()
        seed_everything(cfg.seed + 1000 * self.rank)
        for m in self.task.frozen.values():
            m.to(self.acc.device)
        for t in self.task.teachers.values():
            t.to(self.acc.device, self.dtype)
        for m in self.task.modules.values():
            m.to(self.acc.device)
            if cfg.grad_checkpointing and hasattr(m, "enable_gradient_checkpointing"):
                m.enable_gradient_checkpointing()
        self.opts = self.task.optimizers()
        self.scheds = {k: lr_schedule(o, cfg, k in self.task.fixed_lr) for k, o in self.opts.items()}
        fp16 = self.acc.mixed_precision == "fp16"
        self.scalers = {k: torch.amp.GradScaler(self.acc.device.type, enabled=fp16) for k in self.opts}
        self.ema = None
        if cfg.ema_decay > 0 and self.task.ema_module:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.task.modules[self.task.ema_module],
                                     multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.store = CheckpointStore(self.run_dir / "checkpoints", cfg.keep_last)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.resumed_from: str | None = None

    # ---- checkpoints -------------------------------------------------------------------------
    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def save_checkpoint(self) -> None:
        from accelerate.utils import gather_object

        rngs = gather_object([self._rng_state()])  # in memory only; written below as safetensors+JSON
        if self.acc.is_main_process:
            def fill(tmp: Path) -> None:
                for name, m in self.task.modules.items():
                    save_file({k: v.detach().cpu().contiguous() for k, v in _module_state(m).items()},
                              str(tmp / f"model-{name}.safetensors"))
                for name in self.opts:
                    save_state({"optimizer": self.opts[name].state_dict(),
                                "scheduler": self.scheds[name].state_dict(),
                                "scaler": self.scalers[name].state_dict()}, tmp, f"optim-{name}")
                if self.ema is not None:
                    save_state(self.ema.state_dict(), tmp, "ema")
                for r, rng in enumerate(rngs):
                    save_state(rng, tmp, f"rng-rank{r}")
                (tmp / "trainer.json").write_text(json.dumps(
                    {"step": self.step, "world": self.world, "history": self.history}))

            self.store.write(self.step, fill)
        self.acc.wait_for_everyone()

    def load_checkpoint(self) -> bool:
        folder = self.store.latest_good()
        if folder is None:
            return False
        meta = json.loads((folder / "trainer.json").read_text())
        for name, m in self.task.modules.items():
            state = load_file(str(folder / f"model-{name}.safetensors"), device=str(self.acc.device))
            m.load_state_dict(state, strict=not hasattr(m, "trainable_state_dict"))
        for name in self.opts:
            st = load_state(folder, f"optim-{name}")
            self.opts[name].load_state_dict(st["optimizer"])
            self.scheds[name].load_state_dict(st["scheduler"])
            self.scalers[name].load_state_dict(st["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(load_state(folder, "ema"))
        rng_file = folder / f"rng-rank{self.rank}.json"
        if meta["world"] == self.world and rng_file.exists():
            rng = load_state(folder, f"rng-rank{self.rank}")
            torch.set_rng_state(rng["torch"])
            np.random.set_state(tuple(rng["numpy"]))
            random.setstate(rng["python"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        self.step, self.history = meta["step"], meta["history"]
        self.resumed_from = str(folder)
        return True

    # ---- the loop ----------------------------------------------------------------------------
    def _indices(self, step: int, k: int) -> list[int]:
        start = step * self.cfg.batch_size + (k * self.world + self.rank) * self.micro
        return list(range(start, start + self.micro))

    def _sync_grads(self, params: list[nn.Parameter]) -> None:
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        flat = self.acc.reduce(flat, reduction="mean")
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def _run_phase(self, phase: Phase, batches: list[dict]) -> dict[str, float]:
        opt, scaler = self.opts[phase.optimizer], self.scalers[phase.optimizer]
        mine = [p for g in opt.param_groups for p in g["params"]]
        for name, other in self.opts.items():
            for g in other.param_groups:
                for p in g["params"]:
                    p.requires_grad_(name == phase.optimizer)
        opt.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        for b in batches:
            with self.acc.autocast():
                out = phase.loss(b, self.step)
            if out is None:  # the schedule counts steps, taken or not
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    self.scheds[phase.optimizer].step()
                return logs
            loss, parts = out
            scaler.scale(loss / len(batches)).backward()
            for k, v in parts.items():
                logs[k] = logs.get(k, 0.0) + float(v) / len(batches)
        self._sync_grads(mine)
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(mine, self.cfg.grad_clip or float("inf"))
        logs[f"grad_norm/{phase.optimizer}"] = float(norm)
        logs[f"lr/{phase.optimizer}"] = opt.param_groups[0]["lr"]
        scaler.step(opt)
        scaler.update()
        self.scheds[phase.optimizer].step()
        return logs

    def _mean_logs(self, logs: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return logs
        keys = sorted(logs)
        t = self.acc.reduce(torch.tensor([logs[k] for k in keys], device=self.acc.device), "mean")
        return dict(zip(keys, t.tolist()))

    @contextlib.contextmanager
    def _saved_weights(self):
        """With EMA on, the EMA copy's weights in the live module for the duration (what is saved
        is what is evaluated); the live weights are put back exactly afterwards."""
        if self.ema is None:
            yield
            return
        live = self.task.modules[self.task.ema_module]
        kept = {k: v.detach().clone() for k, v in live.state_dict().items()}
        live.load_state_dict(self.ema.module.state_dict())
        try:
            yield
        finally:
            live.load_state_dict(kept)

    def _evaluate(self, writer) -> None:
        if self.acc.is_main_process:
            for m in self.task.modules.values():
                m.eval()
            with torch.no_grad(), self._saved_weights():
                metrics, images = self.task.evaluate(self.step)
            for m in self.task.modules.values():
                m.train()
            if metrics:
                self.history.append({"step": self.step, **metrics})
                for k, v in metrics.items():
                    writer.add_scalar(f"eval/{k}", v, self.step)
            for k, v in images.items():
                writer.add_image(f"samples/{k}", image_grid(v), self.step)
            atomic_write_text(self.run_dir / "metrics.json",
                              json.dumps({"eval": self.history}, indent=1) + "\n")
        self.acc.wait_for_everyone()

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to `cfg.steps`; with `resume`, continue from the newest good checkpoint."""
        cfg = self.cfg
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        from adcsr.core.run_lock import is_main_process, run_lock

        lock = run_lock(self.run_dir, "training run") if is_main_process() else contextlib.nullcontext()
        try:
            with lock:
                return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)

    def _fit(self, resume: bool) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        cfg = self.cfg
        if resume:
            self.load_checkpoint()
        elif self.store.folders():
            raise UserError(f"{self.run_dir} already holds checkpoints: resume it (--resume) or pick "
                            "a new run folder")
        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step) \
            if self.acc.is_main_process else None
        if self.step == 0:
            self._evaluate(writer)
        for m in self.task.modules.values():
            m.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.name, dynamic_ncols=True,
                   disable=not (cfg.progress and self.acc.is_main_process))
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            batches = [self.task.batch(self.step, self._indices(self.step, k), self.acc.device)
                       for k in range(cfg.grad_accum)]
            logs: dict[str, float] = {}
            for phase in self.task.phases:
                logs.update(self._run_phase(phase, batches))
            if self.ema is not None:
                self.ema.update_parameters(self.task.modules[self.task.ema_module])
            logs = self._mean_logs(logs)
            self.step += 1
            logs["images_per_s"] = cfg.batch_size / (time.perf_counter() - t0)
            if writer is not None and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                for k, v in logs.items():
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, self.step)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if "/" not in k})
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                self._evaluate(writer)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        bar.close()
        if writer is not None:
            writer.close()
        return {"history": self.history, "resumed_from": self.resumed_from, "world": self.world}

    def final_modules(self) -> dict[str, nn.Module]:
        """The trained modules, the EMA copy standing in for its module when EMA is on."""
        mods = dict(self.task.modules)
        if self.ema is not None:
            mods[self.task.ema_module] = self.ema.module
        return mods
