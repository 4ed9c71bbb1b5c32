"""The Python client of the tapfl REST API (v1): for scripts, the ``tapfl`` CLI and the
dashboard.

    from backend.client import TapflClient

    api = TapflClient.from_env()          # TAPFL_API_URL, TAPFL_TOKEN
    experiment = api.submit("demo", algorithm="tap", sweep={"seed": [41, 42]})
    rows = api.metrics(experiment["runs"][0]["id"], client=0, metric="accuracy")
    table = api.compare("accuracy", group=experiment["runs"][0]["group_id"])

Answers are the API's JSON as plain dicts and lists, typed in ``backend.client.types``
(docs/API.md lists their fields). A call the API refuses raises ``ApiError`` with the HTTP
status and the API's ``detail``. The package imports nothing else of ``backend``: a
client needs neither the server's settings nor its database.
"""

from backend.client.api import TapflClient
from backend.client.env import api_url_from_env, token_from_env
from backend.client.http import API_PREFIX, ApiError, ApiUnreachable, Unauthorized

__all__ = [
    "API_PREFIX",
    "ApiError",
    "ApiUnreachable",
    "TapflClient",
    "Unauthorized",
    "api_url_from_env",
    "token_from_env",
]
