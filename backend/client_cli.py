"""``tapfl catalog | submit | list | show | cancel | retry | metrics | compare | export |
users`` over the REST API (``backend.client``), reading ``TAPFL_API_URL`` and
``TAPFL_TOKEN`` (else the token file under ``TAPFL_HOME``). ``tapfl create-user``
(``backend.cli``) is the one that writes to the server's database itself."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from backend.client import ApiError, TapflClient

Json = Annotated[bool, typer.Option("--json", help="print the API's JSON answer")]


@contextlib.contextmanager
def _api() -> Iterator[TapflClient]:
    client = TapflClient.from_env()
    try:
        yield client
    except ApiError as exc:  # refused, or unreachable (ApiUnreachable)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    from tap_engine.config import ConfigError, parse_override

    try:
        return dict(parse_override(item) for item in items or [])
    except ConfigError as exc:
        raise typer.BadParameter(exc.msg, param_hint=what) from None


def submit(
    preset: Annotated[str, typer.Argument(help="a preset name (tapfl presets)")],
    name: Annotated[str | None, typer.Option(help="experiment name")] = None,
    algorithm: Annotated[str | None, typer.Option(help="replaces the preset's")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: dotted.key=value (repeatable)")
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(help="sweep: dotted.key=[v1,v2] (repeatable); one run per combination"),
    ] = None,
    time_limit_s: Annotated[
        float | None, typer.Option(help="time limit per attempt, in seconds (at least 10)")
    ] = None,
    as_json: Json = False,
) -> None:
    """Submit an experiment to the API; prints its id and its runs."""
    sweeps = {k: v if isinstance(v, list) else [v] for k, v in _pairs(sweep, "--sweep").items()}
    with _api() as api:
        experiment = api.submit(
            preset,
            name=name,
            algorithm=algorithm,
            overrides=_pairs(set_, "--set") or None,
            sweep=sweeps or None,
            time_limit_s=time_limit_s,
        )
    if as_json:
        _print_json(experiment)
        return
    typer.echo(f"experiment {experiment['id']} ({experiment['name']}), owner {experiment['owner']}")
    _run_table(experiment["runs"])


def _run_table(runs: list[dict[str, Any]]) -> None:
    _table(
        [
            (r["id"], r["algorithm"], r["seed"], r["status"], f"{r['round']}/{r['total_rounds']}")
            for r in runs
        ],
        ("run", "algorithm", "seed", "status", "round"),
    )


def list_(
    owner: Annotated[str | None, typer.Option(help="the submitting user")] = None,
    status: Annotated[str | None, typer.Option(help="with a run in this status")] = None,
    algorithm: Annotated[str | None, typer.Option(help="with a run of this algorithm")] = None,
    preset: Annotated[str | None, typer.Option()] = None,
    search: Annotated[str | None, typer.Option(help="text in the name or preset")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """List experiments, newest first, with their runs."""
    with _api() as api:
        page = api.experiments(
            limit=limit,
            offset=offset,
            owner=owner,
            status=status,
            algorithm=algorithm,
            preset=preset,
            q=search,
        )
    if as_json:
        _print_json(page)
        return
    rows = [
        (
            e["id"],
            e["name"],
            e["preset"],
            e["owner"],
            e["created_at"][:19],
            " ".join(f"{r['id']}:{r['algorithm']}/{r['status']}" for r in e["runs"]),
        )
        for e in page["items"]
    ]
    _table(rows, ("id", "name", "preset", "owner", "created", "runs"))
    typer.echo(f"({len(page['items'])} of {page['total']})")


def show(run_id: int, as_json: Json = False) -> None:
    """Show a run: status, progress, error and status history."""
    with _api() as api:
        run = api.run(run_id)
    if as_json:
        _print_json(run)
        return
    typer.echo(f"run {run['id']} of experiment {run['experiment_id']} ({run['experiment_name']})")
    for key in (
        "algorithm",
        "seed",
        "status",
        "stage",
        "round",
        "total_rounds",
        "progress",
        "eta_s",
        "worker",
        "group_id",
        "error",
    ):
        if run.get(key) is not None:
            typer.echo(f"  {key}: {run[key]}")
    for t in run.get("transitions", []):
        typer.echo(
            f"  {t['at'][:19]}  {t['from_status'] or '-'} -> {t['to_status']}: {t['reason']}"
        )


def cancel(run_id: int, as_json: Json = False) -> None:
    """Cancel a run (yours, or any as an admin)."""
    with _api() as api:
        run = api.cancel_run(run_id)
    _print_json(run) if as_json else typer.echo(f"run {run_id}: {run['status']}")


def retry(run_id: int, as_json: Json = False) -> None:
    """Queue a failed or cancelled run again; it resumes from its last checkpoint."""
    with _api() as api:
        run = api.retry_run(run_id)
    _print_json(run) if as_json else typer.echo(f"run {run_id}: {run['status']}")


def metrics(
    run_id: int,
    client: Annotated[int | None, typer.Option()] = None,
    task: Annotated[str | None, typer.Option()] = None,
    model: Annotated[
        str | None, typer.Option(help="global, personal, global_ft, final, constant")
    ] = None,
    split: Annotated[str | None, typer.Option(help="local or pooled")] = None,
    metric: Annotated[str | None, typer.Option()] = None,
    round_min: Annotated[int | None, typer.Option()] = None,
    round_max: Annotated[int | None, typer.Option()] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of a table")] = False,
    as_json: Json = False,
) -> None:
    """A run's metric rows (long format), filtered."""
    filters = {
        "client": client,
        "task": task,
        "model": model,
        "split": split,
        "metric": metric,
        "round_min": round_min,
        "round_max": round_max,
    }
    with _api() as api:
        if csv:
            typer.echo(api.metrics_csv(run_id, **filters).decode(), nl=False)
            return
        rows = api.metrics(run_id, **filters)
    if as_json:
        _print_json(rows)
        return
    columns = ("round", "stage", "client", "task", "model", "split", "metric", "value")
    _table([[f"{r[c]:.4f}" if c == "value" else r[c] for c in columns] for r in rows], columns)


def compare(
    metric: Annotated[str, typer.Argument(help="e.g. accuracy, loss, meteor")],
    runs: Annotated[str | None, typer.Option(help="run ids: 1,2,3")] = None,
    group: Annotated[str | None, typer.Option(help="a sweep's group id")] = None,
    split: Annotated[str, typer.Option()] = "local",
    model: Annotated[str, typer.Option()] = "personal",
    as_json: Json = False,
) -> None:
    """Compare runs grouped by config without seed: final mean ± std per client and task."""
    ids = [int(x) for x in runs.split(",")] if runs else None
    with _api() as api:
        result = api.compare(metric, runs=ids, group=group, split=split, model=model)
    if as_json:
        _print_json(result)
        return
    better = "higher" if result["higher_is_better"] else "lower"
    typer.echo(f"{metric} ({model} model, {split} split; {better} is better), final values:")
    rows = [
        (
            g["label"],
            ",".join(map(str, g["run_ids"])),
            f["client"],
            f["task"],
            f"{f['mean']:.4f} ± {f['std']:.4f}",
            f["n"],
        )
        for g in result["groups"]
        for f in g["final"]
    ]
    _table(rows, ("group", "runs", "client", "task", "mean ± std", "n"))


def export(
    run_id: int,
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to write")] = Path("."),
) -> None:
    """Download a run: run.json, metrics.csv, losses.json, steps.json (stage 2 step by step),
    replacements.json, traffic.json (bytes per round, client and direction), logs.json and
    its artifacts (config.json, each client's final
    adapters) into OUTPUT/run-ID/."""
    folder = output / f"run-{run_id}"
    with _api() as api:
        run = api.run(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.json").write_text(json.dumps(run, indent=2))
        (folder / "metrics.csv").write_bytes(api.metrics_csv(run_id))
        for name, rows in (
            ("losses", api.losses(run_id)),
            ("steps", api.steps(run_id)),
            ("replacements", api.replacements(run_id)),
            ("traffic", api.traffic(run_id)),
            ("logs", api.all_logs(run_id)),
        ):
            (folder / f"{name}.json").write_text(json.dumps(rows, indent=2))
        names = [a["name"] for a in api.artifacts(run_id)]
        (folder / "artifacts").mkdir(exist_ok=True)
        for name in names:
            (folder / "artifacts" / name).write_bytes(api.artifact(run_id, name))
    typer.echo(f"run {run_id} -> {folder} ({len(names)} artifacts)")


users_app = typer.Typer(
    help="Team members and their API tokens, over the API (/api/v1/users; admins only).",
    no_args_is_help=True,
)


@users_app.command("create")
def users_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="may manage users")] = False,
    as_json: Json = False,
) -> None:
    """Create a user and print its token (shown this once; only its hash is stored)."""
    with _api() as api:
        user = api.create_user(name, admin)
    if as_json:
        _print_json(user)
        return
    typer.echo(
        f"created {'admin ' if user['is_admin'] else ''}user {user['name']}; token:", err=True
    )
    typer.echo(user["token"])


@users_app.command("list")
def users_list(as_json: Json = False) -> None:
    """Every user: admin or not, token prefix, created, revoked."""
    with _api() as api:
        users = api.users()
    if as_json:
        _print_json(users)
        return
    rows = [
        (
            u["name"],
            "yes" if u["is_admin"] else "",
            (u["token_prefix"] or "?") + "…",
            u["created_at"][:19],
            (u["revoked_at"] or "")[:19],
        )
        for u in users
    ]
    _table(rows, ("name", "admin", "token", "created", "revoked"))


@users_app.command("revoke")
def users_revoke(name: str) -> None:
    """Revoke a user's token: the API answers its requests with 401 from now on."""
    with _api() as api:
        api.revoke_user(name)
    typer.echo(f"revoked {name}")


def catalog(as_json: Json = False) -> None:
    """What the server offers: algorithms, metrics (which way is better) and presets."""
    with _api() as api:
        offered = api.catalog()
    if as_json:
        _print_json(offered)
        return
    typer.echo("algorithms:")
    _table([(a["name"], a["description"]) for a in offered["algorithms"]], ("name", "what"))
    typer.echo("\nmetrics:")
    rows = [
        (
            m["name"],
            "higher" if m["higher_is_better"] else "lower",
            ",".join(m["families"]),
            ",".join(m["main_for"]),
        )
        for m in offered["metrics"]
    ]
    _table(rows, ("name", "better", "task families", "main metric of"))
    typer.echo("\npresets:")
    keys = ("algorithm", "rounds", "clients", "local_steps", "post_iterations")
    rows = [(p["name"], *(p["defaults"].get(k) for k in keys)) for p in offered["presets"]]
    _table(rows, ("name", *keys))


def register(app: typer.Typer) -> None:
    for command in (catalog, submit, show, cancel, retry, metrics, compare, export):
        app.command(help=command.__doc__)(command)
    app.command("list", help=list_.__doc__)(list_)
    app.add_typer(users_app, name="users")
