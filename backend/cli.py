"""Service commands of ``tapfl`` (registered through the ``tapfl.commands`` entry point)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from backend.stack import up

    app.command(help=up.__doc__)(up)
