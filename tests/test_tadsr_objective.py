"""TAD-SR's training objective: regression, HSD and the time-aware discriminator's hinge losses
against numbers worked out by hand, the teacher's deterministic 15-step target, the
discriminator's structure, and CI-sized runs on the tiny ResShift preset (moves the one-step
student toward the teacher; a killed run resumes to the same weights)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn.utils import parametrize

from adcsr.core.models.resshift_schedule import ResShiftSchedule
from adcsr.core.models.resshift_unet import ResShiftUNet
from adcsr.distill.tadsr_discriminator import (TimeAwareDiscriminator, encoder_features, feature_channels,
                                               feature_indices)
from adcsr.distill.tadsr_losses import (eps_from_x0, hinge_discriminator, hinge_generator, hsd_gradient, hsd_loss,
                                        regression_loss)

torch.set_num_threads(1)
S = ResShiftSchedule()


def test_regression_is_the_mse_to_the_teacher():
    assert regression_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item() == pytest.approx(2.5)


def test_eps_from_x0_inverts_the_forward_process():
    # t = 0: √η = 0.02, η = 4e-4, κ√η = 0.04; x_t = 1 + 4e-4·(3 − 1) + 0.04·0.5 = 1.0208
    x0, y, t = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 3.0), torch.tensor([0])
    x_t = S.q_sample(x0, y, t, torch.full((1, 1, 1, 1), 0.5))
    assert x_t.item() == pytest.approx(1.0208, abs=1e-6)
    assert eps_from_x0(S, x_t, x0, y, t).item() == pytest.approx(0.5, abs=1e-4)
    x0, y, noise, t = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4), torch.tensor([0, 1, 2])
    torch.testing.assert_close(eps_from_x0(S, S.q_sample(x0, y, t, noise), x0, y, t), noise, rtol=1e-4, atol=1e-4)


def test_hsd_gradient_by_hand():
    y, noise, t = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2), torch.tensor([0, 2])
    stu, tch = torch.full((2, 3, 2, 2), 0.3), torch.full((2, 3, 2, 2), 0.1)
    # a teacher that predicts the same x0 whatever x_t: g = (1 − η_t)(x̂0 − x0_tch) / (κ√η_t)
    g = hsd_gradient(stu, tch, y, t, noise, S, lambda x_t, tt: torch.full_like(x_t, 0.7))
    assert g[0].flatten().tolist() == pytest.approx([(1 - 0.02**2) * 0.2 / 0.04] * 12, rel=1e-5)  # 4.998
    eta2, std2 = float(S.etas[2]), 2.0 * float(S.sqrt_etas[2])
    assert g[1].flatten().tolist() == pytest.approx([(1 - eta2) * 0.2 / std2] * 12, rel=1e-5)
    # any teacher: zero when the outputs agree (same noise for both), and no gradient flows through g
    seen = []

    def denoise(x_t, tt):
        seen.append(tt)
        return torch.tanh(x_t) * 0.5

    same = hsd_gradient(stu.clone().requires_grad_(), stu, y, t, noise, S, denoise)
    assert torch.count_nonzero(same) == 0 and not same.requires_grad
    assert all(torch.equal(s, t) for s in seen)


def test_hsd_loss_has_gradient_g_and_moves_the_student_toward_the_teacher():
    x0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    g = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    loss = hsd_loss(x0, g)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 1 + 4 + 0) / 4)  # ½·mean(g²)
    (grad,) = torch.autograd.grad(loss, x0)
    torch.testing.assert_close(grad, g / 4)  # ω = 1/numel
    # with a teacher that pulls every x_t to one x0, a step down the HSD gradient closes the gap
    y, noise, t = torch.zeros(1, 3, 2, 2), torch.randn(1, 3, 2, 2), torch.tensor([1])
    stu, tch = torch.randn(1, 3, 2, 2, requires_grad=True), torch.randn(1, 3, 2, 2)
    g = hsd_gradient(stu, tch, y, t, noise, S, lambda x_t, tt: torch.zeros_like(x_t))
    (grad,) = torch.autograd.grad(hsd_loss(stu, g), stu)
    assert (stu.detach() - 1e-2 * grad - tch).norm() < (stu.detach() - tch).norm()


def test_hinge_losses_by_hand():
    real = [torch.tensor([0.5, 2.0]), torch.tensor([[-1.0]])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([[0.5]])]
    # real: head means (0.5 + 0)/2 = 0.25 and 2 → 1.125; fake: (0 + 1)/2 = 0.5 and 1.5 → 1.0
    assert hinge_discriminator(real, fake).item() == pytest.approx(2.125)
    assert hinge_generator(fake).item() == pytest.approx(-((-1.0 + 0.5) / 2))  # −mean of head means


def test_ddim_target_is_the_releases_deterministic_sampler():
    from adcsr.distill.tadsr import ddim_sample

    class Stub:  # a "network" predicting x0 = 0.5·(its scaled input) + 0.1·lq
        schedule = S

        @staticmethod
        def unet(x, t, lq):
            return 0.5 * x + 0.1 * lq

    y, lq, x_T = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    x = x_T
    etas = S.etas.tolist()
    for step in reversed(range(15)):  # the release's ddim_sample: x0·k + m·x_t + j·y, k/m/j from η_t, η_{t−1}
        x0 = 0.5 * x / math.sqrt(etas[step] * 4 + 1) + 0.1 * lq
        e, p = etas[step], (etas[step - 1] if step else 0.0)
        k, m, j = 1 - p + math.sqrt(p * e) - math.sqrt(p / e), math.sqrt(p / e), p - math.sqrt(p * e)
        x = x0 * k + m * x + j * y
    torch.testing.assert_close(ddim_sample(Stub, x_T, y, lq), x, rtol=1e-4, atol=1e-5)


def test_discriminator_reads_the_teachers_down_path_with_film_and_spectral_norm_heads():
    with torch.device("meta"):  # the released network's shapes: input blocks 3, 6, 9, 11 + middle
        full = ResShiftUNet.from_preset("full")
    assert feature_indices(full) == [3, 6, 9, 11] and feature_channels(full) == [160, 320, 320, 640, 640]
    torch.manual_seed(0)
    unet = ResShiftUNet.from_preset("tiny").eval().requires_grad_(False)
    x, lq, t = torch.randn(2, 3, 16, 16, requires_grad=True), torch.randn(2, 3, 16, 16), torch.tensor([0, 13])
    feats = encoder_features(unet, S, x, t, lq)
    assert [f.shape[1] for f in feats] == feature_channels(unet) == [32, 64, 64]
    assert [tuple(f.shape[2:]) for f in feats] == [(8, 8)] * 3
    disc = TimeAwareDiscriminator(feature_channels(unet), unet.config.model_channels)
    logits = disc(feats, t)
    assert [tuple(lg.shape) for lg in logits] == [(2, 1, 8, 8)] * 3
    for scale, c in zip(disc.scales, feature_channels(unet)):
        assert scale.film[-1].out_features == 2 * c  # γ and β per channel
        convs = [m for m in scale.head if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 2 and all(parametrize.is_parametrized(m, "weight") for m in convs)
    with torch.no_grad():  # time-aware: the same features at another t give other logits
        other = disc([f.detach() for f in feats], torch.tensor([5, 5]))
    assert not torch.allclose(other[0], logits[0].detach())
    hinge_generator(logits).backward()  # the generator's gradient reaches the noised latent
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("over, match", [
    ({}, "exactly one of preset"),
    ({"preset": "tiny", "hsd_timesteps": [0, 15]}, "hsd_timesteps"),
    ({"preset": "tiny", "disc_timesteps": [5, 2]}, "disc_timesteps"),
    ({"preset": "tiny", "data": {"hr_size": 48, "heldout_size": 64}}, "multiples of 32"),
])
def test_bad_configs_are_one_line_errors(over, match, tmp_path):
    from adcsr.core.config import load_config
    from adcsr.core.errors import UserError
    from adcsr.distill.tadsr import TADSRConfig, TADSRTask

    cfg = load_config(TADSRConfig, {"run_dir": str(tmp_path / "run"), **over})
    with pytest.raises(UserError, match=match) as err:
        TADSRTask(cfg)
    assert "\n" not in str(err.value)


def _ci_config(tmp_path, **over) -> dict:
    from adcsr.core.config import read_yaml

    cfg = read_yaml("distill/configs/tadsr-ci.yaml")
    trainer = {**cfg["trainer"], "progress": False, **over.pop("trainer", {})}
    return cfg | {"run_dir": str(tmp_path / "run"), "trainer": trainer} | over


def _train_scalars(run) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {k: [e.value for e in acc.Scalars(k)] for k in acc.Tags()["scalars"] if k.startswith("train/")}


def test_a_ci_sized_run_moves_the_one_step_student_toward_the_teacher(tmp_path):
    import yaml

    from adcsr.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_ci_config(tmp_path)))
    assert main(["train", "tadsr", str(path)]) == 0
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    evals = manifest["eval"]
    vs_teacher = [e["psnr_y_vs_teacher"] for e in evals]
    latent = [e["latent_mse_vs_teacher"] for e in evals]
    assert vs_teacher[-1] > vs_teacher[0] + 0.25, vs_teacher
    assert latent[-1] < 0.7 * latent[0], latent
    assert evals[-1]["psnr_y_vs_hr"] > evals[0]["psnr_y_vs_hr"] - 0.5  # no collapse away from the HR
    logs = _train_scalars(run)
    for k in ("train/regression", "train/hsd", "train/adv", "train/disc"):
        assert logs[k] and all(math.isfinite(v) for v in logs[k]), k
    assert all(0 <= v <= 4 for v in logs["train/disc"]), logs["train/disc"]  # hinge D stays in a sane range
    assert max(logs["train/regression"]) < latent[0] * 1.5
    student = ResShiftUNet.from_pretrained(run / "tadsr")  # diffusers folder, safetensors
    assert (run / "tadsr" / "diffusion_pytorch_model.safetensors").is_file()
    assert manifest["stage"] == "tadsr" and manifest["hsd_timesteps"] == [0, 1, 2]
    assert manifest["weights"] == {"regression": 1.0, "hsd": 0.02, "gan": 0.02}
    torch.manual_seed(0)
    teacher = ResShiftUNet.from_preset("tiny")  # the tiny preset teacher of seed 0: the student moved from it
    assert any(not torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values()))


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from adcsr.distill.tadsr import TADSRTask, train_tadsr

    small = {"trainer": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "eval_every": 4},
             "data": {"hr_size": 64, "heldout_size": 64, "heldout_count": 2}}
    whole = train_tadsr(_ci_config(tmp_path / "a", **json.loads(json.dumps(small))))
    cfg = _ci_config(tmp_path / "b", **json.loads(json.dumps(small)))
    batch = TADSRTask.batch

    def killed(self, step, indices, device):
        if step == 3:
            raise Killed
        return batch(self, step, indices, device)

    monkeypatch.setattr(TADSRTask, "batch", killed)
    with pytest.raises(Killed):
        train_tadsr(cfg)
    monkeypatch.setattr(TADSRTask, "batch", batch)
    resumed = train_tadsr(cfg, resume=True)
    assert json.loads((resumed.parent / "manifest.json").read_text())["resumed_from"].endswith("step-00000002")
    a, b = (load_file(str(p / "diffusion_pytorch_model.safetensors")) for p in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
