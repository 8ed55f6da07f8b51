"""Teachers: one interface (`base.Teacher`: `upscale`, `features`, `targets`), the registry by
name below, and the models behind it (each imported only when its teacher is built)."""

from __future__ import annotations

from typing import Any, Callable

from adcsr.core.errors import UserError

from .base import Teacher


def _realesrgan(**kw: Any) -> Teacher:
    from .realesrgan import RealESRGANTeacher

    return RealESRGANTeacher(variant="x4plus", **kw)


def _realesrgan_compact(**kw: Any) -> Teacher:
    from .realesrgan import RealESRGANTeacher

    return RealESRGANTeacher(variant="compact", **kw)


def _osediff(**kw: Any) -> Teacher:
    from .osediff import OSEDiffTeacher

    return OSEDiffTeacher.load(**kw)


def _dfosd(**kw: Any) -> Teacher:
    from .dfosd import DFOSDTeacher

    return DFOSDTeacher.load(**kw)


def _tsdsr(**kw: Any) -> Teacher:
    from .tsdsr import TSDSRTeacher

    return TSDSRTeacher.load(**kw)


def _resshift(**kw: Any) -> Teacher:
    from .resshift import ResShiftTeacher

    return ResShiftTeacher.load(**kw)


def _tadsr(**kw: Any) -> Teacher:
    from .resshift import TADSRTeacher

    return TADSRTeacher.load(**kw)


#: name → factory(**kw) → Teacher.
TEACHERS: dict[str, Callable[..., Teacher]] = {
    "realesrgan": _realesrgan,
    "realesrgan-compact": _realesrgan_compact,
    "osediff": _osediff,
    "dfosd": _dfosd,
    "tsdsr": _tsdsr,
    "resshift": _resshift,
    "tadsr": _tadsr,
}


def get_teacher(name: str, **kw: Any) -> Teacher:
    """Build the teacher registered as `name`; keyword arguments go to its loader."""
    if name not in TEACHERS:
        raise UserError(f"unknown teacher {name!r} (known: {', '.join(TEACHERS)})")
    try:
        return TEACHERS[name](**kw)
    except TypeError as e:  # a loader's signature is the list of its options
        if "unexpected keyword argument" not in str(e):
            raise
        option = str(e).split("argument")[-1].strip(" '")
        raise UserError(f"teacher {name!r} takes no option {option!r}") from None


__all__ = ["TEACHERS", "Teacher", "get_teacher"]
