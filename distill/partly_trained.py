"""Modules that train a small part (LoRA, a head, an embedding) of a large frozen base: only what
trains is checkpointed and optimised, and gradient checkpointing is the backbone's own."""

from __future__ import annotations

import torch
from torch import nn


class PartlyTrained(nn.Module):
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The checkpointed part (the frozen base is rebuilt identically at start)."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in keep}


class CheckpointedBackbone(PartlyTrained):
    """`backbone` names the diffusers model whose own checkpointing the trainer's
    `grad_checkpointing` turns on."""

    backbone = "unet"

    def enable_gradient_checkpointing(self) -> None:
        getattr(self, self.backbone).enable_gradient_checkpointing()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return getattr(self, self.backbone).is_gradient_checkpointing
