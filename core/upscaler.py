"""The one contract of a ×4 super-resolution model: teachers, the student and exported artifacts.

An `Upscaler` is an `nn.Module` whose `forward(lr)` is one untiled pass over an NCHW float32 RGB
batch in [0, 1] (LR sides a multiple of `size_multiple`, or exactly `static_tile` for a model
with a fixed input), returning the ×`scale` image in [0, 1]. It declares the colour correction
its outputs want (`default_color_fix`) and says what it is (`describe()`, for manifests and
reports). `upscale(lr, ...)` runs it over an image of any size, tile by tile (`core.tiling`).

`load_upscaler(spec, **options)` builds one from a spec string — `student:DIR` (a
`save_pretrained` folder), `student:tiny|sd21|micro` (a preset, random weights), a registered teacher's name,
optionally `name:PRESET` — for `adcsr upscale`, `adcsr bench` and the pipeline's report alike.
Exported artifacts are loaded by `adcsr.export.load_artifact` (they satisfy the same contract).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from .errors import UserError


class Upscaler(nn.Module):
    """A ×4 SR model as every command sees it (see the module docstring)."""

    scale: int = 4
    #: LR sides the network takes are multiples of this (tiles are padded to it).
    size_multiple: int = 1
    #: a fixed LR input side (exported artifacts), or None for any multiple of `size_multiple`.
    static_tile: Optional[int] = None
    #: the colour correction toward the LR image its outputs want ("none", "adain", "wavelet").
    default_color_fix: str = "none"

    def describe(self) -> dict[str, Any]:
        """What this model is, for outputs and manifests."""
        return {"name": type(self).__name__}

    def tile_plan(self, tile: int, overlap: int) -> tuple[int, int, int]:
        """(LR tile, overlap, the multiple each tile is padded to) for tiling an image with this
        model: a static-tile model takes whole tiles of its own side, overlapping by a quarter of
        it when the overlap asked for does not fit."""
        if not self.static_tile:
            return tile, overlap, self.size_multiple
        side = self.static_tile
        return side, overlap if 2 * overlap < side else side // 4, side

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, tile: int = 128, overlap: int = 32, color_fix: str | None = None,
                progress: bool = False) -> torch.Tensor:
        """×`scale` SR of an N×3×H×W batch of any size, in overlapping tiles of `tile` LR pixels,
        colour-fixed as a user gets it: `color_fix` None is the model's `default_color_fix`,
        "none" the network's own output."""
        from .tiling import tiled_upscale

        check_image(lr)
        tile, overlap, multiple = self.tile_plan(tile, overlap)
        fix = self.default_color_fix if color_fix is None else color_fix
        return tiled_upscale(self, lr, scale=self.scale, tile=tile, overlap=overlap, multiple=multiple,
                             color_fix=fix, progress=progress)


class Runner(Upscaler):
    """Another way of running an upscaler: `run` (a CPU float32 LR batch → its SR batch) with the
    model's tiling, colour fix and description — the model on another device, or a compiled or
    onnxruntime form of it (`adcsr.backends`). `static_tile`: the side a static-shape form takes."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], model: Upscaler,
                 static_tile: Optional[int] = None, **described: Any):
        super().__init__()
        self.run = run
        self.scale, self.size_multiple, self.default_color_fix = model.scale, model.size_multiple, model.default_color_fix
        self.static_tile = static_tile
        self.described = {**model.describe(), **described}

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.run(lr).clamp(0, 1)

    def describe(self) -> dict[str, Any]:
        return self.described


class Bicubic(Upscaler):
    """Bicubic interpolation, the baseline every report row is compared with."""

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(lr, scale_factor=self.scale, mode="bicubic",
                                               align_corners=False).clamp(0, 1)

    def describe(self) -> dict[str, Any]:
        return {"name": "bicubic"}


def check_image(lr: torch.Tensor) -> None:
    if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[1] != 3:
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise UserError(f"an upscaler takes an N×3×H×W RGB batch in [0, 1], got {shape}")


def load_upscaler(spec: str, device: str = "cpu", **options: Any) -> Upscaler:
    """The model `spec` names (module docstring), in eval mode on `device`; `options` go to a
    teacher's loader (e.g. `sd_folder=...`, `checkpoint=...`)."""
    from .models.teachers import get_teacher

    kind, _, arg = spec.partition(":")
    if kind == "student":
        if options:
            raise UserError(f"a student takes no loader options (got {', '.join(options)})")
        return _student(arg).to(device).eval()
    if arg:
        options = {**options, "preset": arg}
    return get_teacher(kind, **{"device": device, **options}).eval()


def _student(arg: str) -> Upscaler:
    from pathlib import Path

    from .models.student import PRESETS, AdcSRStudent

    if arg in PRESETS:
        torch.manual_seed(0)  # random weights: what latency and size depend on is the architecture
        return AdcSRStudent.from_preset(arg)
    if not (Path(arg) / "config.json").is_file():
        raise UserError(f"{arg or '(none)'} is not a student folder (no config.json)")
    return AdcSRStudent.from_pretrained(arg)
