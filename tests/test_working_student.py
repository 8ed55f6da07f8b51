"""The embedded default's compression is real: its student is smaller than its teacher."""

import torch

from adcsr.compress.from_teacher import Ratios, from_teacher
from adcsr.compress.sd_teacher import load_teacher
from adcsr.core.models.macs import count_macs, count_params
from adcsr.core.models.teachers import get_teacher
from adcsr.report_stage import color_error, student_checks
from adcsr.pipeline import load_pipeline_config


def test_embedded_default_student_has_fewer_params_and_macs_than_its_teacher():
    cfg = load_pipeline_config(None)
    unet, vae = load_teacher(cfg.preset, seed=cfg.seed)  # what the pipeline's compress stage prunes
    student, _ = from_teacher(unet, vae, Ratios(unet=cfg.compress.unet_ratio, decoder=cfg.compress.decoder_ratio),
                              cfg.compress.criterion, None)
    teacher = get_teacher(cfg.stage2.teacher, **cfg.stage2.teacher_options)
    lr = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        s_macs, t_macs = count_macs(student.eval(), lr), count_macs(teacher.net, lr)
    s_params, t_params = count_params(student), count_params(teacher.net)
    assert s_params < t_params and s_macs < t_macs, (s_params, t_params, s_macs, t_macs)


def test_color_error_is_the_largest_channel_mean_offset():
    hr = torch.full((2, 3, 8, 8), 0.5)
    sr = hr.clone()
    sr[1, 2] += 0.07  # one channel of one photo off by 0.07
    sr[0, 0, :4] -= 0.02  # half of a channel off by 0.02: mean off by 0.01
    assert abs(color_error(sr, hr) - 0.07) < 1e-6


def test_student_checks_pass_and_fail_on_the_issue_thresholds():
    bicubic = {"psnr": 22.0, "psnr_vs_teacher": 24.0, "niqe": 11.0}
    teacher = {"psnr": 22.5, "niqe": 4.0, "params": 16.7e6, "macs": 73e9, "latency_ms": 5000.0}
    good = {"psnr": 21.6, "psnr_vs_teacher": 25.6, "niqe": 9.0, "params": 4.7e6, "macs": 20e9,
            "latency_ms": 500.0, "color_error_unfixed": 0.04, "color_error": 0.01}
    w8a16 = {"psnr": 21.2}
    assert all(c["passed"] for c in student_checks(bicubic, teacher, good, w8a16))
    bad = {**good, "psnr_vs_teacher": 25.4, "psnr": 21.4, "niqe": 11.5, "params": 20e6,
           "color_error_unfixed": 0.06, "color_error": 0.03}
    failed = {c["check"] for c in student_checks(bicubic, teacher, bad, {"psnr": 20.8}) if not c["passed"]}
    assert failed == {"teacher / student parameters", "PSNR-Y(student, teacher) − PSNR-Y(bicubic, teacher), dB",
                      "PSNR-Y vs HR: student − teacher, dB", "NIQE: student − bicubic",
                      "colour error without a fix (max channel mean vs HR)", "colour error with the default fix",
                      "PSNR-Y vs HR: W8A16 on the HTP emulator − fp32 student, dB"}
