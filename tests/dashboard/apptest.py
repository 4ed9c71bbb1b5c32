"""AppTest drivers of the dashboard signed in as a user, the way the sign-in form leaves a
browser session: the token in the session's state (``dashboard/signin.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from dashboard import signin

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def signed_in_app(token: str | None = None, *, timeout: float = 30) -> AppTest:
    """The app, not yet run, signed in with ``token`` (default: the test's ``TAPFL_TOKEN``,
    which the dashboard itself never reads)."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    token = token if token is not None else os.environ.get("TAPFL_TOKEN", "")
    if token:
        at.session_state[signin.TOKEN_KEY] = token
    return at
