"""Teachers: one interface (`upscale`, `features`), a registry by name, and the models behind it."""

from .base import TEACHERS, Teacher, get_teacher

__all__ = ["TEACHERS", "Teacher", "get_teacher"]
