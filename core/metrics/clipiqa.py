"""CLIP-IQA (Wang, Chan & Loy, AAAI 2023): how much closer a photo's CLIP embedding is to
"Good photo." than to "Bad photo.": score = softmax(100·cos(img, [good, bad]))[good] ∈ [0, 1].

The image tower is CLIP's RN50 (`ModifiedResNet` with attention pooling), run at the input's own
size without the attention pool's positional embedding, as CLIP-IQA and pyiqa do. Key names are
OpenAI CLIP's (`visual.*`, `logit_scale`), so open_clip's `RN50` / `openai` state dict loads as is
(its text tower keys are ignored). OpenAI's own `RN50.pt` is a TorchScript archive, which
`torch.load(weights_only=True)` refuses: save `torch.jit.load(path).state_dict()` as safetensors first.

Not reproduced here: CLIP's text tower and BPE tokenizer (the vocabulary cannot ship). The two
prompt embeddings (CLIP `encode_text(tokenize(["Good photo.", "Bad photo."]))`, shape (2, 1024))
come from a second local file holding one tensor `prompt_features`. pyiqa's default averages
three prompt pairs; this module uses the paper's single pair.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .base import LearnedMetric, reduce
from .noref import check_images

_RN50_URL = "https://huggingface.co/timm/resnet50_clip.openai (open_clip_model.safetensors)"
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)
_WIDTH, _LAYERS, _EMBED = 64, (3, 4, 6, 3), 1024
PROMPTS = ("Good photo.", "Bad photo.")


class _Bottleneck(nn.Module):
    """CLIP's anti-aliased bottleneck: strided blocks average-pool before conv3 and in the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        out = planes * 4
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                ("1", nn.BatchNorm2d(out)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(self.avgpool(h)))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class _AttentionPool(nn.Module):
    """Multi-head attention of the mean token over all positions, projected to the embedding."""

    def __init__(self, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # N, HW, C
        x = torch.cat([x.mean(1, keepdim=True), x], 1)
        n, t, c = x.shape
        q = self.q_proj(x[:, :1]).view(n, 1, self.heads, -1).transpose(1, 2)
        k = self.k_proj(x).view(n, t, self.heads, -1).transpose(1, 2)
        v = self.v_proj(x).view(n, t, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, c)
        return self.c_proj(out)


class _ModifiedResNet(nn.Module):
    """CLIP's RN50 image tower: three-conv stem, average pools, attention pooling."""

    def __init__(self):
        super().__init__()
        w = _WIDTH
        self.conv1, self.bn1 = nn.Conv2d(3, w // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(w // 2)
        self.conv2, self.bn2 = nn.Conv2d(w // 2, w // 2, 3, padding=1, bias=False), nn.BatchNorm2d(w // 2)
        self.conv3, self.bn3 = nn.Conv2d(w // 2, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = w
        for i, blocks in enumerate(_LAYERS):
            planes, stride = w * 2**i, 1 if i == 0 else 2
            layer = [_Bottleneck(inplanes, planes, stride)]
            inplanes = planes * 4
            layer += [_Bottleneck(inplanes, planes, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.attnpool = _AttentionPool(w * 32, w * 32 // 64, _EMBED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class CLIPIQA(LearnedMetric):
    name = "clipiqa"
    lower_is_better = False
    fetch = (
        f"pass open_clip's CLIP RN50/openai state dict ({_RN50_URL}) and a .safetensors "
        f"holding `prompt_features` = CLIP encode_text of {list(PROMPTS)} (2×1024), or one .safetensors "
        "saved by adcsr.core.metrics.save_weights"
    )
    # The text tower, and the attention pool's positional embedding (CLIP-IQA's `pos_embedding=False`).
    ignore_keys = (
        "visual.attnpool.positional_embedding", "transformer.", "token_embedding.", "positional_embedding",
        "ln_final.", "text_projection",
        "input_resolution", "context_length", "vocab_size",
    )

    def __init__(self):
        super().__init__()
        self.visual = _ModifiedResNet()
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))  # log(100), CLIP's trained value
        self.register_buffer("prompt_features", torch.randn(len(PROMPTS), _EMBED))
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def forward(self, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Quality in [0, 1] (higher is better) of an NCHW [0, 1] batch (sides ≥ 32 px)."""
        check_images(x, 32)
        img = F.normalize(self.visual((x - self.mean) / self.std), dim=-1)
        txt = F.normalize(self.prompt_features, dim=-1)
        probs = (self.logit_scale.exp() * img @ txt.t()).softmax(-1)
        return reduce(probs[:, 0], reduction)
