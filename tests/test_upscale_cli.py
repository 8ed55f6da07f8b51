"""`adcsr upscale`: files and folders, overwrite refusal, corrupt inputs, teachers and students."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from adcsr.cli import main
from adcsr.core.imaging import read_image, write_image
from adcsr.core.photos import load_photo

torch.set_num_threads(1)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "in"
    write_image(load_photo("chelsea")[:, 100:130, 150:190], folder / "cat.png")
    write_image(load_photo("flower")[:, 200:224, 300:340], folder / "sub" / "flower.jpg")
    return folder


def test_one_photo_is_upscaled_x4_and_not_overwritten_without_force(photos, tmp_path, capsys):
    src, out = photos / "cat.png", tmp_path / "cat_x4.png"
    assert main(["upscale", str(src), str(out), "--teacher", "realesrgan-compact"]) == 0
    lr, sr = read_image(src), read_image(out)
    assert sr.shape == (3, 120, 160)
    # an SR of this photo: its 4x downscale is close to the input, far closer than a grey image
    back = F.interpolate(sr[None], scale_factor=0.25, mode="area")[0]
    assert (back - lr).abs().mean() < 0.05 < (lr - lr.mean()).abs().mean()
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"adcsr upscale: wrote {out}"
    before = out.read_bytes()
    assert main(["upscale", str(src), str(out), "--teacher", "realesrgan-compact"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--force" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == before
    assert main(["upscale", str(src), str(out), "--teacher", "realesrgan-compact", "--force",
                 "--color-fix", "wavelet"]) == 0


def test_a_folder_with_a_corrupt_file_writes_the_rest_and_fails(photos, tmp_path, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert main(["upscale", str(photos), str(out), "--teacher", "realesrgan-compact"]) == 2
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "1 of 3 inputs failed" in captured.err
    assert f"adcsr upscale: wrote 2 images to {out} ({out / 'manifest.json'} lists them)" in captured.out
    assert read_image(out / "cat.png").shape == (3, 120, 160)
    assert read_image(out / "sub" / "flower.png").shape == (3, 96, 160)
    assert not (out / "broken.png").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "realesrgan-compact" and manifest["model"]["weights_licence"]
    assert [p.endswith("broken.png") for p in manifest["failed"]] == [True] and len(manifest["written"]) == 2


@pytest.mark.parametrize("argv,message", [
    (["missing.png", "o.png", "--teacher", "realesrgan"], "not found"),
    (["{cat}", "o.png", "--teacher", "nope"], "unknown teacher"),
    (["{cat}", "o.png", "--teacher", "osediff"], "sd_folder"),
    (["{cat}", "o.png", "--teacher", "realesrgan", "--teacher-opt", "oops"], "KEY=VALUE"),
    (["{cat}", "o.png", "--teacher", "realesrgan", "--teacher-opt", "foo=1"], "takes no option 'foo'"),
    (["{cat}", "o.txt", "--teacher", "realesrgan"], "cannot write"),
    (["{cat}", "{cat}", "--teacher", "realesrgan"], "overwrite its input"),
    (["{cat}", "o.png", "--student", "{in}"], "not a student folder"),
    (["{cat}", "o.png", "--teacher", "realesrgan", "--device", "gpu"], "not a torch device"),
    (["{cat}", "o.png", "--teacher", "realesrgan", "--backend", "torch-bf16"], "how a --student runs"),
])
def test_bad_input_is_one_line_exit_2(photos, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(cat=photos / "cat.png", **{"in": photos}) for a in argv]
    assert main(["upscale", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_osediff_tiny_states_its_prompt(photos, tmp_path, capsys):
    out = tmp_path / "o.png"
    argv = ["upscale", str(photos / "cat.png"), str(out), "--teacher", "osediff", "--teacher-opt", "preset=tiny",
            "--tile", "16", "--overlap", "4"]
    assert main(argv) == 0
    assert "prompt: empty prompt as zeros" in capsys.readouterr().err
    sr, lr = read_image(out), read_image(photos / "cat.png")
    assert sr.shape == (3, 120, 160)
    assert torch.allclose(sr.mean((1, 2)), lr.mean((1, 2)), atol=0.03)  # adain by default


def test_a_saved_student_upscales(photos, tmp_path):
    from adcsr.core.models.student import AdcSRStudent

    torch.manual_seed(0)
    AdcSRStudent.from_preset("tiny").save_pretrained(tmp_path / "student")
    out = tmp_path / "s"
    assert main(["upscale", str(photos / "cat.png"), str(out), "--student", str(tmp_path / "student"),
                 "--tile", "0"]) == 0
    sr, lr = read_image(out / "cat.png"), read_image(photos / "cat.png")
    assert sr.shape == (3, 120, 160)
    # the release's colour fix by default: an untrained student's colours are far off, the fix
    # brings every channel's mean to the LR's; --color-fix none gives the network's own output
    assert torch.allclose(sr.mean((1, 2)), lr.mean((1, 2)), atol=0.03)  # up to clipping to [0, 1]
    assert main(["upscale", str(photos / "cat.png"), str(tmp_path / "raw.png"), "--student",
                 str(tmp_path / "student"), "--tile", "0", "--color-fix", "none"]) == 0
    raw = read_image(tmp_path / "raw.png")
    assert (raw.mean((1, 2)) - lr.mean((1, 2))).abs().max() > 0.1


@pytest.mark.parametrize("name,min_db", [("torch-bf16", 35.0), ("onnxruntime", 60.0)])
def test_a_student_upscales_on_a_cpu_backend(photos, tmp_path, capsys, name, min_db):
    """`--backend` runs the same student another way: bf16 close to eager, the shipped fp32 ONNX
    (a static tile, the image padded to whole tiles) equal to it up to float rounding. The photo's
    sides are whole tiles, so eager and the static tile cut the same tiles (GroupNorm's statistics
    are per tile: other tiles would be another function of the image)."""
    from adcsr.backends import bf16_kernels
    from adcsr.core.metrics.fidelity import parity_psnr
    from adcsr.core.models.student import AdcSRStudent

    torch.manual_seed(0)
    AdcSRStudent.from_preset("micro").save_pretrained(tmp_path / "student")
    write_image(load_photo("chelsea")[:, 100:132, 150:198], tmp_path / "cat.png")
    common = [str(tmp_path / "cat.png"), "--student", str(tmp_path / "student"), "--tile", "16", "--overlap", "4",
              "--device", "cpu"]
    assert main(["upscale", common[0], str(tmp_path / "eager.png"), *common[1:]]) == 0
    if name == "torch-bf16" and not bf16_kernels():  # no bf16 kernels on this CPU: one line, exit 2
        assert main(["upscale", common[0], str(tmp_path / "fast.png"), *common[1:], "--backend", name]) == 2
        assert "need a CPU with AVX-512 or AMX" in capsys.readouterr().err
        return
    assert main(["upscale", common[0], str(tmp_path / "fast.png"), *common[1:], "--backend", name]) == 0
    eager, fast = read_image(tmp_path / "eager.png"), read_image(tmp_path / "fast.png")
    assert fast.shape == eager.shape == (3, 128, 192)
    assert min_db < parity_psnr(eager, fast)
    assert main(["upscale", common[0], str(tmp_path / "x.png"), *common[1:3], "--tile", "0",
                 "--backend", "onnxruntime"]) == 2


@pytest.mark.parametrize("out,extra", [("o.jpg", []), ("o.png", ["--color-fix", "wavelet"])])
def test_above_the_stream_threshold_only_streamable_outputs(photos, tmp_path, monkeypatch, capsys, out, extra):
    """Large inputs must stream (PNG, no wavelet fix): the in-memory path is refused in one line."""
    import adcsr.upscale

    monkeypatch.setattr(adcsr.upscale, "STREAM_PIXELS", 30 * 40 - 1)  # the cat crop is 30×40
    argv = ["upscale", str(photos / "cat.png"), str(tmp_path / out), "--teacher", "realesrgan-compact", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "too large to upscale in memory" in err and len(err.splitlines()) == 1
    assert not (tmp_path / out).exists()
    assert main(argv[:2] + [str(tmp_path / "o.png"), *argv[3:5]]) == 0  # streamed to PNG instead
    assert read_image(tmp_path / "o.png").shape == (3, 120, 160)


def test_device_auto_picks_cuda_only_when_present():
    from adcsr.upscale import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
