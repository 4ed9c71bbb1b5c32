"""Errors the engine's modules share; a leaf module, so that any of them can import it."""


class DataError(ValueError):
    """Data that cannot serve a scenario; the message names the client and the dataset."""
