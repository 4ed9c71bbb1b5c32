"""The one settings class of the services: backend, worker, `tapfl up` and the dashboard.

Every field can be set from the environment with the ``TAPFL_`` prefix (``TAPFL_HOME``,
``TAPFL_DATABASE_URL``, ...). Fields left unset are derived from the others, so pointing
``TAPFL_HOME`` somewhere else moves the database, the run directories and the token file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAPFL_", extra="ignore")

    home: Path = Path("var")
    """State directory: the SQLite database, run workdirs, the bootstrap token, logs."""
    database_url: str | None = None
    redis_url: str | None = None
    redis_port: int = 6379
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_port: int = 8501
    api_url: str | None = None
    token: str | None = None
    """The token clients (dashboard, CLI) send; see ``client_token``."""
    runs_dir: Path | None = None
    """Each run's engine workdir (checkpoints, artifacts) is ``runs_dir/<run_id>``."""
    max_body_bytes: int = 1_000_000

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        # Absolute, so that a path stored in the database or handed to a child process
        # means the same thing whatever the reader's working directory is.
        self.home = self.home.expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'tapfl.db'}"
        if self.redis_url is None:
            self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        if self.api_url is None:
            self.api_url = f"http://{self.api_host}:{self.api_port}"
        self.runs_dir = (self.runs_dir or self.home / "runs").expanduser().resolve()
        return self

    @property
    def token_file(self) -> Path:
        """Where the API writes the bootstrap admin token on first start."""
        return self.home / "token"

    def client_token(self) -> str | None:
        """The token to send: ``TAPFL_TOKEN`` if set, else the bootstrap token file's."""
        if self.token:
            return self.token
        if self.token_file.is_file():
            return self.token_file.read_text().strip() or None
        return None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
