"""The ``tapfl`` command line. Engine commands live here; service commands (``up``, ...)
plug in through the ``tapfl.commands`` entry point so the engine never imports them.

The engine's own settings from the environment (``TAPFL_CACHE_DIR``,
``TAPFL_STATE_MEMORY_BUDGET_MB``) are read here, as the defaults of options, and handed
to the engine as arguments."""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from tap_engine.cache import default_cache_dir
from tap_engine.config import ConfigError, list_presets, load_preset, parse_override, resolve_config

app = typer.Typer(
    help="Federated personalization experiments (TAP and baselines).", no_args_is_help=True
)
presets_app = typer.Typer(help="List and show scenario presets.", invoke_without_command=True)
app.add_typer(presets_app, name="presets")
console = Console(stderr=True)

CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        envvar="TAPFL_CACHE_DIR",
        help="cache of tiny backbones and preprocessed data, shared by runs "
        "(default: $XDG_CACHE_HOME/tapfl or ~/.cache/tapfl)",
    ),
]
StateBudgetOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        envvar="TAPFL_STATE_MEMORY_BUDGET_MB",
        help="memory for client states before they spill to disk, in MiB (default: no limit)",
    ),
]


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _overrides(pairs: list[str]) -> dict[str, Any]:
    return dict(parse_override(p) for p in pairs)


def config_or_exit(preset: str, algorithm: str | None, sets: list[str]):
    try:
        return resolve_config(preset, algorithm, _overrides(sets))
    except ConfigError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in exc.errors()]
        _fail("invalid config\n  " + "\n  ".join(lines))


@app.command()
def run(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="run directory (resumes if it holds a checkpoint)"),
    ],
    preset: Annotated[str, typer.Option(help="preset name or path to a YAML scenario")] = "demo",
    algorithm: Annotated[str | None, typer.Option(help="algorithm (default: the preset's)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: dotted.key=value (repeatable)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    cache_dir: CacheDirOption = None,
    state_budget_mb: StateBudgetOption = None,
) -> None:
    """Run one experiment in this process, with no services.

    Writes OUTPUT/config.json (the resolved config) and OUTPUT/events.jsonl (one JSON
    object per engine event).
    """
    from tap_engine.runner import run as run_engine

    config = config_or_exit(preset, algorithm, set_ or [])
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(config.model_dump_json(indent=2))
    from tap_engine.progress import ConsoleObserver

    with (
        (output / "events.jsonl").open("a") as sink,
        ConsoleObserver(sink, quiet=quiet) as observer,
    ):
        result = run_engine(
            config,
            observer,
            output,
            cache_dir=cache_dir or default_cache_dir(),
            state_memory_budget_mb=state_budget_mb,
        )
    console.print(
        f"{result.status}: {result.rounds_completed} rounds in {result.elapsed_s:.1f}s -> {output}"
    )
    if result.status != "succeeded":
        raise typer.Exit(1)


@app.command()
def bench(
    preset: Annotated[str, typer.Option(help="preset name or path to a YAML scenario")] = "demo",
    algorithm: Annotated[str | None, typer.Option(help="algorithm (default: the preset's)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: dotted.key=value (repeatable)")
    ] = None,
    clients: Annotated[
        str, typer.Option(help="sizes of the scaling study, comma-separated ('' skips it)")
    ] = "1,10,30,100",
    step_clients: Annotated[
        str | None,
        typer.Option(help="clients whose step is measured (default: one per distinct task set)"),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="steps per timed repeat (default: local_steps)")
    ] = None,
    repeats: Annotated[int, typer.Option(help="timed repeats; medians are reported")] = 5,
    rounds: Annotated[int, typer.Option(help="timed FL rounds, after the warm-up")] = 3,
    warmup: Annotated[int, typer.Option(help="untimed FL rounds first")] = 1,
    state_budget_mb: StateBudgetOption = None,
    cache_dir: CacheDirOption = None,
    stand_in_data: Annotated[
        bool, typer.Option(help="random data shaped like the preset's hub datasets (offline)")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every figure here")] = None,
) -> None:
    """Measure the engine: a bare training step against the engine's step, whole FL rounds
    (time, traffic, memory), and how rounds and memory grow with the number of clients."""
    from tap_engine.bench.suite import BenchOptions, run_bench

    config_or_exit(preset, algorithm, set_ or [])  # readable errors before any work
    options = BenchOptions(
        preset=preset,
        algorithm=algorithm,
        overrides=_overrides(set_ or []),
        step_clients=[int(c) for c in step_clients.split(",")] if step_clients else None,
        steps=steps,
        repeats=repeats,
        rounds=rounds,
        warmup=warmup,
        scaling=[int(c) for c in clients.split(",") if c.strip()],
        state_budget_mb=state_budget_mb,
        stand_in_data=stand_in_data,
        cache_dir=cache_dir or default_cache_dir(),
    )
    result = run_bench(options, say=typer.echo)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))


@app.command()
def results(
    runs: Annotated[list[Path], typer.Argument(help="run folders written by `tapfl run`")],
    split: Annotated[str, typer.Option(help="local (personalization) or pooled")] = "local",
    distillation: Annotated[
        bool, typer.Option(help="also the student's stage-2 task loss against its λ·KD")
    ] = False,
) -> None:
    """The final models' metrics of several runs side by side, as a Markdown table, with
    each family's means and the constant answer's chance level for text generation."""
    from tap_engine.results import distillation_markdown, markdown, read_run, table

    if split not in ("local", "pooled"):
        _fail(f"--split: {split!r} is neither local nor pooled")
    missing = [str(r) for r in runs if not (r / "events.jsonl").is_file()]
    if missing:
        _fail(f"no events.jsonl in {', '.join(missing)}")
    loaded = [read_run(r) for r in runs]
    typer.echo(markdown(loaded, table(loaded, split)))
    if distillation:
        typer.echo("\n" + distillation_markdown(loaded))


@presets_app.callback()
def presets(ctx: typer.Context) -> None:
    """List the built-in presets."""
    if ctx.invoked_subcommand is None:
        for name in list_presets():
            data = load_preset(name)
            typer.echo(
                f"{name}\t{len(data['scenario']['clients'])} clients\t{data.get('algorithm', '')}"
            )


@presets_app.command("show")
def presets_show(
    name: str,
    algorithm: Annotated[str | None, typer.Option()] = None,
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
) -> None:
    """Print the resolved config of a preset (with overrides) as JSON."""
    config = config_or_exit(name, algorithm, set_ or [])
    typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))


def _load_plugins() -> None:
    for entry in entry_points(group="tapfl.commands"):
        entry.load()(app)


def engine_commands() -> set[str]:
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    return commands | {g.name for g in app.registered_groups if g.name}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # An engine command needs no service: importing their plugins would cost every
    # ``tapfl run`` the services' imports (FastAPI, SQLAlchemy, Celery).
    if not args or args[0] not in engine_commands():
        _load_plugins()
    app(args=args, prog_name="tapfl")


if __name__ == "__main__":
    sys.exit(main())
