"""The one settings class of the services: backend, worker, `tapfl up` and the dashboard.

Every field can be set from the environment with the ``TAPFL_`` prefix (``TAPFL_HOME``,
``TAPFL_DATABASE_URL``, ...). Fields left unset are derived from the others, so pointing
``TAPFL_HOME`` somewhere else moves the database, the run directories and the token file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# With late acknowledgement Redis hands a message that was not acknowledged within this time
# to another worker; it must exceed the longest run (time limit plus kill grace).
VISIBILITY_TIMEOUT_S = 7 * 24 * 3600
MAX_RUN_TIME_LIMIT_S = VISIBILITY_TIMEOUT_S - 24 * 3600
MIN_RUN_TIME_LIMIT_S = 10.0
"""The smallest time limit of a run. Before its first round a run starts a process, claims
the run, loads its data and builds its model: seconds even for the demo preset. A smaller
limit could only kill the run in its setup, so it is refused rather than accepted."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAPFL_", extra="ignore")

    home: Path = Field(default=Path("var"), validate_default=True)
    """State directory: the SQLite database, run workdirs, the bootstrap token, logs."""
    # The fields given a placeholder default here are derived from the others when unset
    # (see ``_derive_unset``), so readers always get a value.
    database_url: str = ""
    """Unset: the SQLite file ``home/tapfl.db``."""
    redis_url: str = ""
    """Unset: Redis on loopback at ``redis_port``."""
    redis_port: int = 6379
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_port: int = 8501
    api_url: str = ""
    """Unset: ``http://api_host:api_port``."""
    token: str | None = None
    """The token clients (dashboard, CLI) send; see ``client_token``."""
    runs_dir: Path = Path()
    """Each run's engine workdir (checkpoints, artifacts) is ``runs_dir/<run_id>``; unset:
    ``home/runs``."""
    max_body_bytes: int = 1_000_000

    # Serving many requests at once (docs/API.md, "Concurrency"). A request holds at most one
    # database connection and one thread at a time, so serving ``api_concurrency`` at once
    # needs that many of each: the pool holds them and a few more for the reconciler.
    api_concurrency: int = Field(default=32, ge=1)
    """Requests the API serves at once; the others wait their turn (no thread, no connection)."""
    api_max_waiting: int = Field(default=2000, ge=0)
    """Requests that may wait for a turn; beyond, 503 with ``Retry-After`` at once."""
    api_wait_timeout_s: float = Field(default=45.0, gt=0)
    """A request that waited this long for its turn gets 503 with ``Retry-After`` (below the
    60 s timeout of the Python client, so that it learns why)."""
    retry_after_s: int = Field(default=2, ge=1)
    """The ``Retry-After`` of a 503 from a saturated server."""
    db_pool_size: int = Field(default=0, ge=0)
    """Connections each process keeps open; unset (0): ``api_concurrency`` + 4."""
    db_max_overflow: int = Field(default=4, ge=0)
    """Connections opened beyond the pool at peaks, closed when returned."""
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    """How long a request waits for a free connection before it gets 503 (not 500)."""
    cache_dir: Path = Path()
    """The engine's cache, shared by every run: preprocessed data, tiny backbones; unset:
    ``home/cache``."""
    state_memory_budget_mb: float | None = Field(default=None, ge=0)
    """Memory for a run's per-client states before they spill to its workdir; None: no limit."""

    # The run lifecycle (docs/LIFECYCLE.md).
    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    """How often a worker marks its run alive in SQL."""
    heartbeat_timeout_s: float = Field(default=120.0, gt=0)
    """A running run whose heartbeat is older than this has lost its worker; it is re-queued."""
    stop_poll_s: float = Field(default=1.0, gt=0)
    """How often a running run reads its status between local steps (cancel latency)."""
    reconcile_interval_s: float = Field(default=30.0, ge=0)
    """How often the API looks for lost workers and lost broker messages; 0: never."""
    resend_after_s: float = Field(default=30.0, gt=0)
    """A queued run whose message the broker lost is sent again once it is this old."""
    max_recoveries: int = Field(default=3, ge=0)
    """Worker losses in a row (without a round completed between them) before a run fails."""
    run_time_limit_s: float = Field(
        default=5 * 24 * 3600, ge=MIN_RUN_TIME_LIMIT_S, le=MAX_RUN_TIME_LIMIT_S
    )
    """Time limit of one attempt of a run, unless the experiment sets its own: the run stops
    at the first step or evaluation past it and fails."""
    run_kill_grace_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    """After Celery's soft limit (the time limit + 60 s), how long a run has to stop before
    its process is killed."""
    run_log_level: str = "INFO"
    """Lowest level of the log lines a run keeps in SQL (``GET /runs/{id}/logs``)."""
    worker_preload: bool = True
    """A worker imports the libraries its runs need (``tap_engine.preload``) once, before its
    pool starts, so that each run's process inherits them instead of importing them."""

    @field_validator("home", "runs_dir", "cache_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Absolute, so that a path stored in the database or handed to a child process
        # means the same thing whatever the reader's working directory is.
        return path.expanduser().resolve()

    @model_validator(mode="after")
    def _derive_unset(self) -> Settings:
        # Set means given, by the environment or the constructor: an explicit value is kept
        # even when it equals the placeholder.
        given = self.model_fields_set
        if "database_url" not in given:
            self.database_url = f"sqlite:///{self.home / 'tapfl.db'}"
        if "redis_url" not in given:
            self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        if "api_url" not in given:
            self.api_url = f"http://{self.api_host}:{self.api_port}"
        if "runs_dir" not in given:
            self.runs_dir = self._absolute(self.home / "runs")
        if "cache_dir" not in given:
            self.cache_dir = self._absolute(self.home / "cache")
        if "db_pool_size" not in given or self.db_pool_size == 0:
            self.db_pool_size = self.api_concurrency + 4
        if self.db_pool_size + self.db_max_overflow < self.api_concurrency:
            raise ValueError(
                f"db_pool_size + db_max_overflow ({self.db_pool_size} + {self.db_max_overflow})"
                f" must be at least api_concurrency ({self.api_concurrency}): each request "
                "served holds a database connection"
            )
        if self.heartbeat_timeout_s < 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"heartbeat_timeout_s ({self.heartbeat_timeout_s:g}) must be at least twice "
                f"heartbeat_interval_s ({self.heartbeat_interval_s:g}), or one late beat would "
                "hand a healthy run to another worker"
            )
        if self.run_log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(
                f"run_log_level must be DEBUG, INFO, WARNING or ERROR, not {self.run_log_level!r}"
            )
        self.run_log_level = self.run_log_level.upper()
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
