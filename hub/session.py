"""A client session from credentials (kept apart so the face stays import-light)."""

from __future__ import annotations

from typing import Callable

from .chain import Session
from .credentials import Credentials, open_client


def open_session(creds: Credentials, log: Callable[[str], None] = print) -> Session:
    return Session(open_client(creds), creds, log)
