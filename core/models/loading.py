"""Loading saved models with one-line errors for what a user can get wrong (path, contents)."""

from __future__ import annotations

from ..errors import UserError


def load_or_user_error(loader, what: str, path, **kw):
    """Run a diffusers `from_pretrained`, turning its load failures into one-line UserErrors."""
    try:
        return loader(path, **kw)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the {what} from {path}: {first[:300]}") from None


def read_tensors_with_metadata(path, what: str) -> tuple[dict, dict]:
    """(JSON metadata, tensors) of a checkpoint saved as `<name>.safetensors` + `<name>.json`
    (this project's safe form of a released pickle); a missing or unreadable file is a UserError."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    path = Path(path).with_suffix(".safetensors")
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise UserError(f"{what} checkpoint not found: {path} with its {meta_path.name} beside it")
    try:
        return json.loads(meta_path.read_text()), load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise UserError(f"cannot read {what} checkpoint {path}: {str(e).splitlines()[0]}") from None


def copy_parameters(model, state: dict, select, what: str, prefix: str = "") -> None:
    """Copy `state[prefix + name]` into every parameter of `model` whose name `select(name)`
    accepts; a missing key or a shape that does not fit is a UserError naming `what` (the file)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if not select(name):
                continue
            key = prefix + name
            if key not in state:
                raise UserError(f"{what} lacks {key}")
            if state[key].shape != p.shape:
                raise UserError(f"{what}: {key} has shape {tuple(state[key].shape)}, the model expects "
                                f"{tuple(p.shape)} (wrong base model?)")
            p.copy_(state[key])
