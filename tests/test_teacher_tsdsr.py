"""TSD-SR at inference (tiny preset: SD3-shaped, random weights, non-zero LoRA): full size counted
on the meta device, the released LoRA key layout and target lists, the one step ẑ = z_L − v at
t = 1000, and TSD-SR as a stage-2 teacher."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.models.sd3_configs import transformer_config, vae_config
from adcsr.core.models.teachers import get_teacher
from adcsr.core.models.teachers import tsdsr as T
from adcsr.core.photos import load_photo

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher():
    return T.TSDSRTeacher.from_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def lr():
    return F.interpolate(load_photo("chelsea")[None, :, 100:164, 150:214], size=(16, 16), mode="area")


@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory):
    """The tiny base from_preset(seed=0) builds before LoRA, as a diffusers SD3 folder."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    folder = tmp_path_factory.mktemp("sd3")
    torch.manual_seed(0)
    SD3Transformer2DModel(**transformer_config("tiny")).save_pretrained(folder / "transformer")
    AutoencoderKL(**vae_config("tiny")).save_pretrained(folder / "vae")
    return folder


def test_full_size_counts():
    c = T.count_full_size()
    assert c["transformer"] == 2_028_328_000 and c["vae"] == 83_819_683  # SD3-medium
    # rank 64 on the released targets (peft matches them as suffixes: `proj` also takes pos_embed.proj)
    assert c["lora"] == 95_178_432


def test_the_released_target_lists(teacher):
    t_targets = {n.rsplit(".lora_A", 1)[0] for n, _ in teacher.transformer.named_parameters() if "lora_A" in n}
    assert any(n.endswith("attn.add_q_proj") for n in t_targets) and any(n.endswith("ff.net.0.proj") for n in t_targets)
    assert all(n.split(".")[-1] in {"to_k", "to_q", "to_v", "0", "add_q_proj", "add_k_proj", "add_v_proj", "proj",
                                    "linear", "proj_out"} for n in t_targets)
    v_targets = {n.rsplit(".lora_A", 1)[0] for n, _ in teacher.vae.named_parameters() if "lora_A" in n}
    modules = {n for n, _ in teacher.vae.named_modules()}
    assert v_targets == {t for t in T.VAE_TARGETS if t in modules} and all(t.startswith("encoder.") for t in v_targets)
    # at full size every released VAE target exists but quant_conv (SD3's VAE has none)
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        full = {n for n, _ in AutoencoderKL(**vae_config("sd3")).named_modules()}
    assert [t for t in T.VAE_TARGETS if t not in full] == ["quant_conv"]


def test_upscale_and_describe(teacher, lr):
    sr = teacher.upscale(lr)
    assert sr.shape == (1, 3, 64, 64) and 0 <= sr.min() and sr.max() <= 1
    d = teacher.describe()
    assert d["name"] == "tsdsr" and d["timestep"] == 1000.0 and teacher.default_color_fix == "wavelet"


def test_the_step_is_z_minus_v_at_t_1000():
    class ConstantV(torch.nn.Module):
        dtype = torch.float32

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, hidden_states, timestep, encoder_hidden_states, pooled_projections):
            assert float(timestep[0]) == 1000.0
            return type("O", (), {"sample": torch.full_like(hidden_states, 0.25)})()

    t = T.TSDSRTeacher.__new__(T.TSDSRTeacher)
    torch.nn.Module.__init__(t)
    t.transformer = ConstantV()
    z = torch.ones(1, 16, 2, 2)
    torch.testing.assert_close(t.predict_latent(z, torch.zeros(1, 3, 8), torch.zeros(1, 4)), torch.full_like(z, 0.75))


def test_lora_round_trips_in_the_released_layout(teacher, sd3_folder, lr, tmp_path):
    from safetensors.torch import load_file

    folder = teacher.save_lora(tmp_path / "lora")  # from_preset leaves the LoRA unmerged
    keys = list(load_file(str(folder / "transformer.safetensors"))) + list(load_file(str(folder / "vae.safetensors")))
    assert all(k.startswith("transformer.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert not any(".default." in k for k in keys)
    assert any(k.startswith("transformer.encoder.") for k in keys)  # the VAE's keys carry the same prefix
    torch.save(torch.randn(1, 8, 64), tmp_path / "prompt_embeds.pt")
    torch.save(torch.randn(1, 32), tmp_path / "pool_embeds.pt")
    kw = dict(sd3_folder=str(sd3_folder), lora_dir=str(folder), rank=4,
              prompt_embeds=str(tmp_path / "prompt_embeds.pt"), pooled_embeds=str(tmp_path / "pool_embeds.pt"))
    unmerged = get_teacher("tsdsr", merge=False, **kw)
    merged = get_teacher("tsdsr", **kw)
    # merging W + BA into one weight rounds differently from running the two paths: float rounding only
    torch.testing.assert_close(merged.upscale(lr), unmerged.upscale(lr), atol=5e-5, rtol=0)
    assert "embedding files" in merged.describe()["prompt"]
    reference = T.TSDSRTeacher.from_preset("tiny", seed=0)
    reference.prompt_embeds, reference.pooled_embeds = unmerged.prompt_embeds, unmerged.pooled_embeds
    # float rounding only: weights read from safetensors may sit unaligned and take other SIMD kernels
    torch.testing.assert_close(unmerged.upscale(lr), reference.upscale(lr), atol=1e-5, rtol=0)


def test_bad_files_are_one_line_errors(sd3_folder, tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "lora").mkdir()
    save_file({"transformer.nothing.lora_A.weight": torch.zeros(1)}, str(tmp_path / "lora" / "transformer.safetensors"))
    with pytest.raises(UserError, match="does not fit the model"):
        get_teacher("tsdsr", sd3_folder=str(sd3_folder), lora_dir=str(tmp_path / "lora"), rank=4)
    with pytest.raises(UserError, match="tsdsr needs sd3_folder"):
        get_teacher("tsdsr")


def test_tsdsr_teaches_a_stage2_student(tmp_path):
    from diffusers import AutoencoderKL

    from adcsr.core.models.sd_configs import vae_config as sd21_vae
    from adcsr.core.models.vae_decoder import PrunedVAEDecoder
    from adcsr.distill.stage2 import distill

    torch.manual_seed(0)
    AutoencoderKL(**sd21_vae("tiny")).save_pretrained(tmp_path / "vae")
    PrunedVAEDecoder.from_preset("tiny").save_pretrained(tmp_path / "decoder")
    distill({"vae": str(tmp_path / "vae"), "decoder": str(tmp_path / "decoder"), "student_preset": "tiny",
             "teacher": "tsdsr", "teacher_options": {"preset": "tiny"}, "run_dir": str(tmp_path / "s2"),
             "adv_start": 1, "trainer": {"steps": 2, "batch_size": 2, "eval_every": 2, "progress": False},
             "data": {"hr_size": 64, "heldout_size": 64, "heldout_count": 2}})
    assert json.loads((tmp_path / "s2" / "manifest.json").read_text())["teacher"]["name"] == "tsdsr"
