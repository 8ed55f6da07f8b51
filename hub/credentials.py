"""The AI Hub token: found, used to build a client, and kept out of every message.

Where it comes from, first found wins: `--api-token`, the `QAIHUB_API_TOKEN` environment
variable, then qai-hub's own configuration (`qai-hub configure --api_token …` writes
`~/.qai_hub/client.ini`; `QAIHUB_CLIENT_INI` points elsewhere). The token is never printed,
logged or written: every error that leaves this stage goes through `redact`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from adcsr.core.errors import UserError

TOKEN_ENV = "QAIHUB_API_TOKEN"
HOW_TO = ("no Qualcomm AI Hub token: run `qai-hub configure --api_token YOUR_TOKEN` (writes ~/.qai_hub/client.ini), "
          f"or set {TOKEN_ENV} (`adcsr hub` also takes --api-token)")


@dataclass(frozen=True)
class Credentials:
    config: object  # qai_hub.ClientConfig
    source: str  # where the token came from, for messages (never the token)

    @property
    def token(self) -> str:
        return self.config.api_token

    def __repr__(self) -> str:  # a dataclass repr would show the config, token included
        return f"Credentials(source={self.source!r})"


def find_credentials(api_token: str | None = None) -> Credentials | None:
    """The configured credentials, or None when no token is configured anywhere."""
    from qai_hub import ClientConfig
    from qai_hub.api_utils import get_config_path, load_api_config_from_file

    if api_token:
        return Credentials(ClientConfig(api_token=api_token), "--api-token")
    if os.environ.get(TOKEN_ENV):
        return Credentials(ClientConfig(api_token=os.environ[TOKEN_ENV]), TOKEN_ENV)
    path = get_config_path()
    if not os.path.isfile(path):
        return None
    try:
        config = load_api_config_from_file(path)
    except Exception:  # noqa: BLE001 - an unreadable or incomplete client.ini is "no token"
        return None
    return Credentials(config, path) if config.api_token else None


def require_credentials(api_token: str | None = None) -> Credentials:
    creds = find_credentials(api_token)
    if creds is None:
        raise UserError(HOW_TO)
    return creds


def open_client(creds: Credentials):
    """A qai_hub.Client that uses exactly these credentials (no other configuration is read)."""
    import qai_hub

    return qai_hub.Client(config=creds.config)


def redact(text: str, creds: Credentials | None) -> str:
    """`text` with the token replaced (service errors may echo request headers)."""
    if creds is None or not creds.token:
        return text
    return text.replace(creds.token, "***")
