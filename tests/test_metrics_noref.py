"""No-reference learned metrics (CLIPIQA, MUSIQ, MANIQA): random weights saved to a file, loaded
through the real path, run on real photos."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from adcsr.core.errors import UserError
from adcsr.core.metrics import build_metric, evaluate, load_metric, load_weights, save_weights
from adcsr.core.metrics.clipiqa import _AttentionPool
from adcsr.core.metrics.maniqa import MANIQA, _ViT
from adcsr.core.metrics.musiq import _grid_index, multiscale_patches
from adcsr.core.metrics.noref import grid_crops
from adcsr.core.photos import load_photo


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small single-image passes: on a shared 2-core machine, thread hand-offs cost more than they give."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _photos(h: int, w: int, names=("chelsea", "coffee")) -> torch.Tensor:
    return torch.stack([load_photo(n)[:, :h, :w] for n in names])


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)


def _saved(name: str, tmp_path) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = build_metric(name)
    return model, str(save_weights(model, tmp_path / f"{name}.safetensors"))


def _with_blur(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, _blur(x[:1])])


def _check_scores(model, batch: torch.Tensor, alone: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image scores: finite, distinct, and the same for the last image scored alone (no batch
    mixing, no randomness); `alone`: an image that must score as the last one."""
    with torch.no_grad():
        scores = model(batch, reduction="none")
        single = model(batch[-1:] if alone is None else alone, reduction="none")
    assert scores.shape == (len(batch),) and torch.isfinite(scores).all()
    torch.testing.assert_close(single, scores[-1:], rtol=1e-4, atol=1e-5)
    assert (scores[:, None] - scores[None, :]).abs().add(torch.eye(len(batch))).min() > 1e-6  # input matters
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    return scores


@pytest.mark.parametrize("name, h, w", [("clipiqa", 192, 192), ("musiq", 160, 128)])
def test_noref_metric_properties(name, h, w, tmp_path):
    built, path = _saved(name, tmp_path)
    model = load_metric(name, path)
    for k, v in built.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    scores = _check_scores(model, _with_blur(_photos(h, w)))
    if name == "clipiqa":
        assert ((scores >= 0) & (scores <= 1)).all()
        with torch.no_grad():  # swapping the two prompts turns p(good) into p(bad)
            model.prompt_features.copy_(model.prompt_features.flip(0))
            swapped = model(_photos(h, w, ("chelsea",)))
        torch.testing.assert_close(swapped, 1 - scores[0], rtol=1e-4, atol=1e-5)


def test_clipiqa_loads_the_published_clip_file_and_separate_prompt_embeddings(tmp_path):
    built, _ = _saved("clipiqa", tmp_path)
    state = built.state_dict()
    clip = {k: v for k, v in state.items() if k != "prompt_features"}
    # CLIP's file also holds the text tower and the attention pool's positional embedding.
    clip |= {"visual.attnpool.positional_embedding": torch.zeros(50, 2048), "token_embedding.weight": torch.zeros(8, 4),
             "transformer.resblocks.0.ln_1.weight": torch.ones(4), "text_projection": torch.zeros(4, 4)}
    torch.save(clip, tmp_path / "RN50.pth")
    save_file({"prompt_features": state["prompt_features"]}, str(tmp_path / "prompts.safetensors"))
    model = load_metric("clipiqa", [tmp_path / "RN50.pth", tmp_path / "prompts.safetensors"])
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(UserError, match="missing prompt_features") as e:
        load_metric("clipiqa", tmp_path / "RN50.pth")
    assert "\n" not in str(e.value)


def test_clip_attention_pool_equals_torch_multi_head_attention():
    torch.manual_seed(0)
    pool = _AttentionPool(64, 4, 32).eval()
    x = torch.randn(2, 64, 3, 5)
    tokens = x.flatten(2).permute(2, 0, 1)
    tokens = torch.cat([tokens.mean(0, keepdim=True), tokens])  # (HW+1, N, C), as CLIP's own code
    q, k, v, c = pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj
    ref, _ = F.multi_head_attention_forward(
        tokens, tokens, tokens, 64, 4, None, torch.cat([q.bias, k.bias, v.bias]), None, None, False, 0.0,
        c.weight, c.bias, training=False, need_weights=False, use_separate_proj_weight=True,
        q_proj_weight=q.weight, k_proj_weight=k.weight, v_proj_weight=v.weight,
    )
    with torch.no_grad():
        torch.testing.assert_close(pool(x), ref[0])


def test_musiq_multiscale_patches_cover_each_scale():
    x = torch.rand(1, 3, 100, 60)
    patches, pos, scale, mask = multiscale_patches(x)
    # 224 × 134 → 7×5 of 49 slots; 384 × 230 → 12×8 of 144; native 100×60 → 4×2, all kept.
    assert patches.shape == (1, 49 + 144 + 8, 3, 32, 32)
    assert [int(mask[scale == s].sum()) for s in range(3)] == [35, 96, 8]
    assert not patches[0, ~mask].any()
    # The native scale's first patch is the image's top-left 32×32 (SAME padding splits 28 rows as 14/14).
    torch.testing.assert_close(patches[0, 49 + 144], F.pad(x, (2, 2, 14, 14))[0, :, :32, :32])
    rows = _grid_index(5, 20).view(5, 20)
    assert rows[:, 0].tolist() == [0, 20, 40, 60, 80] and rows[0].tolist() == [i // 2 for i in range(20)]


def test_grid_crops_cover_the_image_evenly():
    x = torch.arange(2 * 3 * 70 * 100, dtype=torch.float32).view(2, 3, 70, 100)
    crops = grid_crops(x, 32)
    assert crops.shape == (2, 3 * 4, 3, 32, 32)
    assert torch.equal(crops[:, 0], x[..., :32, :32]) and torch.equal(crops[:, -1], x[..., -32:, -32:])
    assert torch.equal(grid_crops(x[..., :32, :32], 32)[:, 0], x[..., :32, :32])


def test_maniqa_properties_on_a_small_crop_size(tmp_path):
    """The published network sees 224 crops; the same network on 64 crops keeps this test fast."""
    torch.manual_seed(0)
    built = MANIQA(img_size=64)
    state = built.state_dict()
    # pyiqa's file also holds ViT blocks 11–12, its norm and classifier, and unused Swin convs.
    extra = {"vit.blocks.10.attn.qkv.weight": torch.zeros(2304, 768), "vit.blocks.11.norm1.weight": torch.ones(768),
             "vit.norm.weight": torch.ones(768), "vit.head.weight": torch.zeros(1000, 768),
             "swintransformer1.downsample.weight": torch.zeros(768, 768, 3, 3)}
    torch.save(state | extra, tmp_path / "maniqa_pipal.pth")
    model = load_weights(MANIQA(img_size=64), tmp_path / "maniqa_pipal.pth", fetch="", ignore=MANIQA.ignore_keys)
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k
    # Scored alone, a 40-px image must score as its 64-px bilinear enlargement did in the batch.
    small = load_photo("coffee")[None, :, :40, :40]
    batch = torch.cat([_with_blur(_photos(64, 64, ("chelsea",))), F.interpolate(small, (64, 64), mode="bilinear")])
    scores = _check_scores(model.freeze(), batch, alone=small)
    assert (scores >= 0).all()  # ReLU scores averaged with sigmoid weights
    with pytest.raises(UserError, match="vit.pos_embed is \\(1, 65, 768\\), expected \\(1, 785, 768\\)"):
        load_metric("maniqa", tmp_path / "maniqa_pipal.pth")  # a 64-px network is not the published one


def test_missing_or_mismatched_weights_are_one_line_errors(tmp_path):
    for name, what in (("clipiqa", "resnet50_clip.openai"), ("musiq", "musiq_koniq_ckpt"), ("maniqa", "MANIQA_PIPAL")):
        with pytest.raises(UserError, match=what):
            load_metric(name, tmp_path / "nope.pth")
        with pytest.raises(UserError, match=what):
            load_metric(name)
    _, clip = _saved("clipiqa", tmp_path)
    with pytest.raises(UserError, match="does not match MUSIQ") as e:
        load_metric("musiq", clip)
    assert "\n" not in str(e.value)


def test_evaluate_scores_noref_metrics_without_hr(tmp_path):
    _, path = _saved("clipiqa", tmp_path)
    sr = _photos(96, 192)  # NIQE needs two 96×96 blocks
    out = evaluate(sr, None, ["clipiqa", "niqe"], weights={"clipiqa": path})
    assert set(out) == {"clipiqa", "niqe"} and 0 <= out["clipiqa"] <= 1
    with torch.no_grad():
        assert out["clipiqa"] == pytest.approx(float(load_metric("clipiqa", path)(sr)), rel=1e-5)
    with pytest.raises(UserError, match="reference"):
        evaluate(sr, None, ["lpips"])


@pytest.mark.parametrize(
    "name, params, key, shape",
    [
        # CLIP RN50's image tower has 38,316,896 parameters, 102,400 of them the (unused) positional embedding.
        ("clipiqa", 38_316_896 - 102_400 + 1, "visual.attnpool.c_proj.weight", (1024, 2048)),
        # MUSIQ: "27M parameters" (Ke et al. 2021).
        ("musiq", 27_000_000, "transformer_encoder.posembed_input.position_emb", (1, 100, 384)),
    ],
)
def test_architectures_match_the_published_networks(name, params, key, shape):
    model = build_metric(name)
    n = sum(p.numel() for p in model.parameters())
    assert n == params if name == "clipiqa" else abs(n - params) < 0.01 * params
    assert tuple(model.state_dict()[key].shape) == shape


def test_maniqa_vit_trunk_equals_torch_transformer_layers_with_the_same_weights():
    torch.manual_seed(0)
    vit = _ViT(side=8).eval()
    ref = []
    for block in vit.blocks:  # a ViT block is a pre-norm encoder layer with exact GELU
        layer = torch.nn.TransformerEncoderLayer(
            768, 12, 3072, 0.0, "gelu", 1e-6, batch_first=True, norm_first=True, device="meta"
        )
        state = {f"self_attn.in_proj_{t}": getattr(block.attn.qkv, t) for t in ("weight", "bias")}
        for mine, theirs in (("attn.proj", "self_attn.out_proj"), ("mlp.fc1", "linear1"), ("mlp.fc2", "linear2"),
                             ("norm1", "norm1"), ("norm2", "norm2")):
            for t in ("weight", "bias"):
                state[f"{theirs}.{t}"] = block.get_submodule(mine).get_parameter(t)
        layer.load_state_dict(state, assign=True)  # meta: no random init to pay for
        ref.append(layer.eval())
    x = 2 * _photos(64, 64) - 1
    with torch.no_grad():
        h = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        h = torch.cat([vit.cls_token.expand(2, -1, -1), h], 1) + vit.pos_embed
        taps = []
        for i, layer in enumerate(ref):
            h = layer(h)
            taps.append(h[:, 1:])
        torch.testing.assert_close(vit(x), torch.cat(taps[6:10], 2), rtol=1e-4, atol=1e-4)


def test_maniqa_vit_is_vit_b8_without_its_last_two_blocks():
    model = MANIQA()
    # timm's vit_base_patch8_224: 86,576,872 parameters; MANIQA taps blocks 7–10, so blocks 11–12
    # (2 × 7,087,872), the final norm (1,536) and the classifier (769,000) are not built.
    assert sum(p.numel() for p in model.vit.parameters()) == 86_576_872 - 2 * 7_087_872 - 1_536 - 769_000
    assert tuple(model.state_dict()["vit.pos_embed"].shape) == (1, 785, 768)
    assert tuple(model.state_dict()["tablock1.0.c_q.weight"].shape) == (784, 784)
    assert tuple(model.state_dict()["swintransformer2.layers.1.blocks.1.attn_mask"].shape) == (49, 16, 16)
