# The worker writes the API's database: the same fixtures serve both test folders.
from tests.backend.conftest import db_backend, sessions, settings  # noqa: F401
