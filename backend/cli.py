"""Service commands of ``tapfl`` (registered through the ``tapfl.commands`` entry point)."""

from __future__ import annotations

from typing import Annotated

import typer


def reconcile(
    every: Annotated[
        float | None,
        typer.Option(help="keep going, once every SECONDS (default: once, then exit)"),
    ] = None,
) -> None:
    """Re-queue runs whose worker was lost and re-send runs whose message the broker lost.

    The API does this every TAPFL_RECONCILE_INTERVAL_S seconds; this command is for
    deployments that turn that off (0) and run it on their own schedule instead.
    """
    import signal
    import threading

    from backend.db import session_factory, upgrade_database
    from backend.queue import celery_run_queue
    from backend.services.reconciler import reconcile_once, take_turn
    from backend.settings import get_settings

    settings = get_settings()
    upgrade_database(settings.database_url)
    queue = celery_run_queue(settings.redis_url)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    while True:
        if every is None or take_turn(settings, every):
            with session_factory()() as session:
                report = reconcile_once(session, queue, settings)
            typer.echo(
                f"re-queued {report.requeued}, cancelled {report.cancelled}, "
                f"failed {report.failed}, re-sent {report.resent}"
            )
        if every is None or stopping.wait(every):
            return


def create_user(
    name: str, admin: Annotated[bool, typer.Option("--admin", help="may manage users")] = False
) -> None:
    """Create a user straight in the server's database (TAPFL_DATABASE_URL / TAPFL_HOME) and
    print its token: for the person who runs the server, when the API is not up or no admin
    token is at hand. With a token, ``tapfl users create`` does the same over the API."""
    from backend.db import session_factory, upgrade_database
    from backend.services import users
    from backend.settings import get_settings

    url = get_settings().database_url
    assert url is not None
    upgrade_database(url)
    with session_factory(url)() as session:
        try:
            user, token = users.create(session, name, admin)
        except users.UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"created {'admin ' if user.is_admin else ''}user {user.name}; token:", err=True)
    typer.echo(token)


def register(app: typer.Typer) -> None:
    from backend import client_cli
    from backend.stack import up
    from backend.workers import worker

    app.command(help=up.__doc__)(up)
    app.command(help=worker.__doc__)(worker)
    app.command(help=reconcile.__doc__)(reconcile)
    app.command("create-user", help=create_user.__doc__)(create_user)
    client_cli.register(app)
