"""Business logic of the API and the worker; route handlers and tasks only call these."""
