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
