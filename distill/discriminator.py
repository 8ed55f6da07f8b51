"""The two discriminators: a patch discriminator on images (stage 1) and the LoRA-UNet
discriminator on decoder features (stage 2, as released: FACTS §1)."""

from __future__ import annotations

import torch
from torch import nn

# LoRA targets of the released stage-2 discriminator: attention q/k/v/out, the ResNet and
# up/down-sampler convs, proj_in/proj_out and the feed-forward (GEGLU proj and output linear).
RELEASED_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_shortcut", "conv", "conv_out",
    "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
)


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


class FeatureDiscriminator(nn.Module):
    """An SD-shaped `UNet2DConditionModel` reading decoder features: new `conv_in` (feature
    channels → the UNet's first width, initialised from the old weights repeated and divided by
    the repeat count), peft LoRA on the released targets, fixed timestep and prompt embedding.
    Trainable: the LoRA weights and `conv_in`. Output: the UNet's logit map."""

    def __init__(self, unet, feature_channels: int, rank: int = 4, timestep: int = 999,
                 prompt_embeds: torch.Tensor | None = None, prompt_tokens: int = 1, seed: int = 0):
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
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=list(RELEASED_LORA_TARGETS)))
        new.requires_grad_(True)
        self.unet = unet
        if prompt_embeds is None:
            # Stand-in for the text embedding of the LR image's tags (no text encoder offline):
            # one fixed seeded embedding, saved with the discriminator.
            g = torch.Generator().manual_seed(seed)
            prompt_embeds = torch.randn(1, prompt_tokens, unet.config.cross_attention_dim, generator=g)
        self.register_buffer("prompt_embeds", prompt_embeds.reshape(1, -1, prompt_embeds.shape[-1]))
        self.timestep = timestep

    def enable_gradient_checkpointing(self) -> None:
        """diffusers' own checkpointing of the backbone UNet (the trainer's `grad_checkpointing`)."""
        self.unet.enable_gradient_checkpointing()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.unet.is_gradient_checkpointing

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What changes in training (LoRA, conv_in) plus the prompt: the checkpointed part."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in keep or k == "prompt_embeds"}

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b = feats.shape[0]
        t = torch.full((b,), self.timestep, device=feats.device, dtype=torch.long)
        return self.unet(feats, t, encoder_hidden_states=self.prompt_embeds.expand(b, -1, -1).to(feats.dtype)).sample
