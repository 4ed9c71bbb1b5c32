"""The client and CLI tests run against a real API server per module (``tests/live_api.py``).
No worker runs: submitted runs stay queued, and tests that need results write the rows a
worker would write straight into the server's database."""

from tests.live_api import LiveApi, live_api  # noqa: F401
