"""The two discriminators: a patch discriminator on images (stage 1) and the LoRA-UNet
discriminator on decoder features (stage 2, as released: FACTS §1)."""

from __future__ import annotations

import torch
from torch import nn

from .partly_trained import CheckpointedBackbone

# The release's LoRA rule for its stage-2 discriminator: every weight (not bias, not norm) whose
# parameter name contains one of these, matched as substrings, so `conv` also picks `conv_in`,
# `conv_out` and the samplers' convs, and `to_q` … the cross-attention's projections too.
RELEASED_LORA_PATTERNS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
    "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj",
)
RELEASED_LORA_ALPHA = 8  # peft's default, which the release leaves in place: scale alpha / r = 2 at r = 4


def released_lora_targets(unet: nn.Module) -> list[str]:
    """Module names the release puts LoRA on (its three adapters together: each module is in
    exactly one, so one adapter over their union computes the same)."""
    return [n[: -len(".weight")] for n, _ in unet.named_parameters()
            if n.endswith(".weight") and "norm" not in n and any(p in n for p in RELEASED_LORA_PATTERNS)]


class PatchDiscriminator(nn.Module):
    """PatchGAN-style logit map over image patches (written by hand: a few convs, no library has
    it without torchvision). GroupNorm, not BatchNorm, so data-parallel runs match single ones."""

    def __init__(self, channels: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers):
            mods += [nn.Conv2d(c, c * 2, 4, 2, 1), nn.GroupNorm(8, c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        mods += [nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(8, c), nn.LeakyReLU(0.2), nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, img01: torch.Tensor) -> torch.Tensor:
        return self.net(img01 * 2 - 1)


class FeatureDiscriminator(CheckpointedBackbone):
    """An SD-shaped `UNet2DConditionModel` reading decoder features, as released: a new `conv_in`
    (feature channels → the UNet's first width, initialised from the old weights repeated and
    divided by the repeat count), then peft LoRA (gaussian init, scale alpha / rank) on the
    release's targets, `conv_in` included; a fixed timestep. Conditioned on a text embedding per
    sample when the caller gives one (the release: its LR image's DAPE tags), else on one fixed
    embedding. Trainable: the LoRA weights and `conv_in`. Output: the UNet's logit map."""

    def __init__(self, unet, feature_channels: int, rank: int = 4, timestep: int = 999,
                 prompt_embeds: torch.Tensor | None = None, prompt_tokens: int = 1, seed: int = 0,
                 alpha: float = RELEASED_LORA_ALPHA):
        super().__init__()
        from peft import LoraConfig

        old = unet.conv_in
        new = nn.Conv2d(feature_channels, old.out_channels, old.kernel_size, padding=old.padding)
        reps = -(-feature_channels // old.in_channels)
        with torch.no_grad():
            new.weight.copy_(old.weight.repeat(1, reps, 1, 1)[:, :feature_channels] / reps)
            new.bias.copy_(old.bias)
        unet.conv_in = new
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                    target_modules=released_lora_targets(unet)))
        new.requires_grad_(True)
        self.unet = unet
        if prompt_embeds is None:
            # Stand-in for the text embedding of the LR image's tags (no text encoder offline):
            # one fixed seeded embedding, saved with the discriminator.
            g = torch.Generator().manual_seed(seed)
            prompt_embeds = torch.randn(1, prompt_tokens, unet.config.cross_attention_dim, generator=g)
        self.register_buffer("prompt_embeds", prompt_embeds.reshape(1, -1, prompt_embeds.shape[-1]))
        self.timestep = timestep

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What changes in training (LoRA, conv_in) plus the prompt: the checkpointed part."""
        return {**super().trainable_state_dict(), "prompt_embeds": self.prompt_embeds}

    def forward(self, feats: torch.Tensor, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """`embeds`: (B, L, D) text embeddings, one per sample; default: the fixed one."""
        b = feats.shape[0]
        t = torch.full((b,), self.timestep, device=feats.device, dtype=torch.long)
        cond = self.prompt_embeds.expand(b, -1, -1) if embeds is None else embeds
        return self.unet(feats, t, encoder_hidden_states=cond.to(feats.dtype)).sample


class NoiseAwareDiscriminator(CheckpointedBackbone):
    """DFOSD's noise-aware discriminator (NAD): the down blocks and mid block of an SD UNet
    (initialised from the generator's base UNet, LoRA on both, rank = alpha = 16 in the paper)
    and a new per-location MLP (1×1 convolutions) turning the mid-block features into a realism
    logit per latent patch. It reads latents already noised to timestep `t` (the caller applies
    F(z, t) = √ᾱ_t·z + √(1−ᾱ_t)·ε) and is told `t` through the UNet's timestep embedding. The
    cross-attention reads one fixed zero embedding (the paper conditions on no prompt).
    Trainable: the LoRA weights and the MLP."""

    def __init__(self, unet, rank: int = 16, alpha: float = 16, hidden: int = 256, tokens: int = 1):
        super().__init__()
        from peft import LoraConfig

        unet.up_blocks = nn.ModuleList()  # never run: the NAD ends at the mid block
        unet.conv_norm_out = unet.conv_act = unet.conv_out = None
        unet.requires_grad_(False)
        targets = [t for t in released_lora_targets(unet) if t.startswith(("down_blocks.", "mid_block."))]
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets))
        self.unet = unet
        width = unet.config.block_out_channels[-1]
        self.head = nn.Sequential(nn.Conv2d(width, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, 1, 1))
        self.register_buffer("prompt_embeds", torch.zeros(1, tokens, unet.config.cross_attention_dim))

    def forward(self, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        u = self.unet
        emb = u.time_embedding(u.time_proj(t).to(noisy.dtype))
        cond = self.prompt_embeds.expand(noisy.shape[0], -1, -1).to(noisy.dtype)
        h = u.conv_in(noisy)
        for block in u.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(h, temb=emb, encoder_hidden_states=cond)
            else:
                h, _ = block(h, temb=emb)
        h = u.mid_block(h, emb, encoder_hidden_states=cond)
        return self.head(h)
