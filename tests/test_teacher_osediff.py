"""OSEDiff teacher (tiny preset: SD-shaped, random weights, non-zero LoRA): structure as released,
checkpoint round trips in both formats, LoRA merging, features in the student's space."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.models.sd_configs import unet_config, vae_config
from adcsr.core.models.teachers import get_teacher
from adcsr.core.models.teachers import osediff as O
from adcsr.core.models.teachers.sd_one_step import sd21_scheduler
from adcsr.core.photos import load_photo

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher():
    return O.OSEDiffTeacher.from_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def lr():
    img = load_photo("chelsea")[None, :, 100:164, 150:214]
    return F.interpolate(img, size=(16, 16), mode="area")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """The tiny base model (what from_preset builds before LoRA) as a diffusers SD folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    UNet2DConditionModel(**unet_config("tiny")).save_pretrained(folder / "unet")
    AutoencoderKL(**vae_config("tiny")).save_pretrained(folder / "vae")
    return folder


def test_full_size_counts_match_sd21_base():
    unet, vae = O.count_full_size()
    assert round(unet / 1e6, 1) == 865.9
    assert round(vae / 1e6, 1) == 83.7


def test_lora_groups_ranks_scale_and_targets_follow_the_release(teacher):
    cfg = teacher.unet.peft_config
    assert set(cfg) == set(O.GROUPS) and set(teacher.vae.peft_config) == {"default_encoder"}
    for c in [*cfg.values(), teacher.vae.peft_config["default_encoder"]]:
        assert c.r == 4 and c.lora_alpha == 8  # peft default alpha: scale 2.0
    assert teacher.unet.conv_in.scaling["default_encoder"] == 2.0
    groups = {name: set(m.lora_A) for name, m in teacher.unet.named_modules() if hasattr(m, "lora_A")}
    enc, dec, oth = ([n for n, g in groups.items() if g == {grp}] for grp in O.GROUPS)
    assert len(enc) + len(dec) + len(oth) == len(groups)  # each layer in exactly one group
    assert "conv_in" in enc and "conv_out" in dec
    assert all("down_blocks" in m or m == "conv_in" for m in enc)
    assert all("up_blocks" in m or m == "conv_out" for m in dec)
    assert oth and all(m.startswith("mid_block.") for m in oth)  # no time embedding, no norms
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" in enc
    assert "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj" in dec
    assert "mid_block.resnets.0.conv1" in oth and "down_blocks.1.resnets.0.conv_shortcut" in enc
    assert not any("norm" in m or "time_emb" in m for m in groups)
    vae_t = [name for name, m in teacher.vae.named_modules() if hasattr(m, "lora_A")]
    assert "quant_conv" in vae_t and "encoder.conv_in" in vae_t and "encoder.mid_block.attentions.0.to_q" in vae_t
    assert not any(m.startswith("decoder") or "post_quant" in m for m in vae_t)
    ckpt = teacher.checkpoint_dict()
    # trained state: LoRA everywhere plus the full conv_in, nothing else
    assert "conv_in.base_layer.weight" in ckpt["state_dict_unet"]
    assert all("lora" in k or k.startswith("conv_in.") for k in ckpt["state_dict_unet"])
    assert all("lora" in k for k in ckpt["state_dict_vae"])


def test_lora_is_live_and_the_step_is_the_x0_prediction(teacher, lr):
    x0 = teacher.x0_latent(lr)
    teacher.unet.disable_adapters()
    try:
        assert not torch.allclose(teacher.x0_latent(lr), x0, atol=1e-4)
    finally:
        teacher.unet.enable_adapters()
    # the closed form, recomputed with diffusers' own DDPM scheduler step
    hq = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1) * 2 - 1
    with torch.no_grad():
        z = teacher.vae.encode(hq).latent_dist.mean * 0.18215
        eps = teacher.unet(z, torch.tensor([999]), encoder_hidden_states=teacher.prompt_embeds).sample
    sched = sd21_scheduler(None)
    sched.set_timesteps(1)
    sched.timesteps = torch.tensor([999])  # as the release does: one step from t = 999
    ref = sched.step(eps, 999, z).pred_original_sample
    assert torch.allclose(x0, ref, atol=1e-4)


def test_checkpoint_round_trips_in_both_formats(teacher, sd_folder, lr, tmp_path):
    want = teacher(lr)
    teacher.save_checkpoint(tmp_path / "osediff")
    assert {p.name for p in tmp_path.iterdir()} == {"osediff.safetensors", "osediff.json"}
    torch.save(teacher.checkpoint_dict(), tmp_path / "released.pkl")  # the authors' format
    for ckpt in ("osediff.safetensors", "released.pkl"):
        other = O.OSEDiffTeacher.load(sd_folder=str(sd_folder), checkpoint=str(tmp_path / ckpt), merge=False)
        for mine, theirs in ((teacher.unet, other.unet), (teacher.vae, other.vae)):
            a, b = mine.state_dict(), theirs.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), ckpt
        # same weights; from_pretrained picks another attention kernel, hence float-rounding only
        assert (other(lr) - want).abs().max() < 1e-5, ckpt
        assert "zeros" in other.describe()["prompt"]  # no text encoder, no embedding: stated


def test_merged_lora_agrees_with_unmerged(teacher, sd_folder, lr, tmp_path):
    teacher.save_checkpoint(tmp_path / "c")
    merged = get_teacher("osediff", sd_folder=str(sd_folder), checkpoint=str(tmp_path / "c.safetensors"))
    assert merged.describe()["merged"] and not hasattr(merged.unet, "peft_config")
    assert (merged(lr) - teacher(lr)).abs().max() < 1e-4


def test_bad_inputs_are_one_line_errors(sd_folder, tmp_path):
    with pytest.raises(UserError, match="sd_folder"):
        get_teacher("osediff")
    (tmp_path / "x.pkl").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read"):
        O.read_checkpoint(tmp_path / "x.pkl")
    torch.save({"rank_unet": 4}, tmp_path / "partial.pkl")
    with pytest.raises(UserError, match="missing rank_vae"):
        O.read_checkpoint(tmp_path / "partial.pkl")
    with pytest.raises(UserError, match="CUDA"):
        O.OSEDiffTeacher.load(preset="tiny", dtype="fp16", device="cpu")


def test_half_precision_off_cuda_is_refused_and_leaves_the_teacher_as_it_was(teacher, lr):
    want = teacher.x0_latent(lr)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(UserError, match="CUDA"):
            teacher.to("cpu", dtype)
    assert teacher.dtype == torch.float32 and teacher.describe()["dtype"] == "fp32"
    assert {p.dtype for p in teacher.unet.parameters()} == {torch.float32}
    assert torch.equal(teacher.x0_latent(lr), want)


def test_prompt_embedding_file_is_used_and_stated(tmp_path, lr, teacher):
    from safetensors.torch import save_file

    save_file({"prompt_embeds": torch.randn(1, 77, 64)}, str(tmp_path / "p.safetensors"))
    other = O.OSEDiffTeacher.from_preset("tiny", seed=0, prompt_embedding=str(tmp_path / "p.safetensors"))
    assert "embedding file" in other.describe()["prompt"]
    assert not torch.allclose(other.x0_latent(lr), teacher.x0_latent(lr), atol=1e-4)
    save_file({"e": torch.randn(1, 77, 32)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(UserError, match="expected"):
        O.OSEDiffTeacher.from_preset("tiny", prompt_embedding=str(tmp_path / "wrong.safetensors"))


def test_upscale_a_heldout_photo_with_the_adain_colour_fix(teacher):
    img = load_photo("flower")[None, :, 150:190, 300:340]
    sr = teacher.upscale(img, tile=32, overlap=8, color_fix="adain")  # 2x2 tiles, padded to 16
    assert sr.shape == (1, 3, 160, 160) and 0 <= sr.min() and sr.max() <= 1
    # AdaIN: per-channel statistics of the SR follow the LR photo's (random weights or not)
    assert torch.allclose(sr.mean((2, 3)), img.mean((2, 3)), atol=0.03)


def test_features_match_the_student_for_the_same_lr(teacher):
    from diffusers import AutoencoderKL

    from adcsr.core.models.feature_space import FeatureSpace
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.models.vae_decoder import PrunedVAEDecoder

    student = AdcSRStudent.from_preset("tiny").eval()
    space = FeatureSpace(AutoencoderKL(**vae_config("tiny")), PrunedVAEDecoder.from_preset("tiny"))
    lr = load_photo("grace_hopper")[None, :, 200:220, 200:236]  # 20x36: padded to 32x48
    with torch.no_grad():
        feats = teacher.features(lr, space, student.size_multiple)
        assert feats.shape == student.features(lr).shape
        # the released path: x0 → post_quant_conv → pruned conv_in → mid-block
        from adcsr.core.models.padding import pad_to_multiple

        padded, _ = pad_to_multiple(lr, student.size_multiple)
        assert torch.allclose(feats, space.from_latent(teacher.x0_latent(padded)), atol=1e-5)


def _tiny_text_encoder(folder):
    """A one-layer CLIP text encoder and a letters-only CLIP tokenizer, saved as in an SD folder."""
    import json

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    (folder / "tokenizer").mkdir(exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"),
                  model_max_length=77).save_pretrained(folder / "tokenizer")
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)
    torch.manual_seed(1)
    CLIPTextModel(cfg).save_pretrained(folder / "text_encoder")


def test_a_text_prompt_goes_through_the_folders_text_encoder(teacher, sd_folder, tmp_path):
    folder = tmp_path / "sd"
    folder.mkdir()
    for sub in ("unet", "vae"):
        (folder / sub).symlink_to(sd_folder / sub)
    _tiny_text_encoder(folder)
    cat, cat_source = O._prompt_embeds(folder, "a cat", None, 64)
    empty, empty_source = O._prompt_embeds(folder, None, None, 64)
    assert cat.shape == empty.shape == (1, 77, 64) and not torch.allclose(cat, empty)
    assert cat_source == "text encoder, prompt 'a cat'" and empty_source == "text encoder, prompt ''"
    teacher.save_checkpoint(tmp_path / "c")
    other = O.OSEDiffTeacher.load(sd_folder=str(folder), checkpoint=str(tmp_path / "c.safetensors"), prompt="a cat")
    assert other.describe()["prompt"] == cat_source
    assert torch.equal(other.prompt_embeds, cat)
