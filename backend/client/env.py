"""Where the client finds the API and its token when the caller does not say.

The same environment the services read (``TAPFL_`` prefix), but only the few fields a
client needs, so that the client runs without the server's settings or packages: the API
at ``TAPFL_API_URL`` (else ``http://TAPFL_API_HOST:TAPFL_API_PORT``), the token in
``TAPFL_TOKEN``, else in the file the API writes its bootstrap admin token to on first
start, ``$TAPFL_HOME/token`` (``TAPFL_HOME`` defaults to ``./var``, as for the services).
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAPFL_", extra="ignore")

    home: Path = Path("var")
    api_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    token: str | None = None

    @property
    def token_file(self) -> Path:
        return self.home.expanduser().resolve() / "token"


def api_url_from_env() -> str:
    env = ClientEnv()
    return (env.api_url or "").strip() or f"http://{env.api_host}:{env.api_port}"


def token_from_env() -> str:
    """``TAPFL_TOKEN``, else the bootstrap token file under ``TAPFL_HOME``; "" for none."""
    env = ClientEnv()
    if env.token and env.token.strip():
        return env.token.strip()
    if env.token_file.is_file():
        return env.token_file.read_text().strip()
    return ""
