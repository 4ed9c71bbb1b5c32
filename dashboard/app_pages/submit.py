"""Submit: start an experiment from a preset, with its main hyperparameters overridden.

The algorithms, task families and presets (with the values each field keeps when left
empty) are the API's catalog. The API validates everything; its 422 messages appear under
the field they are about. Several algorithms or seeds make a sweep (one run per
combination), and the page says how many runs that queues before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from backend.client import ApiError
from backend.client.types import Catalog, CatalogPreset, Experiment
from dashboard import data, ui


@dataclass(frozen=True)
class Hyper:
    """A config field the form overrides: its key in ``overrides``, label, and input kind."""

    key: str
    label: str
    integer: bool = True
    help: str = ""


HYPERPARAMETERS = (
    Hyper("rounds", "Rounds", help="federated rounds (stage 1)"),
    Hyper("clients_per_round", "Clients per round"),
    Hyper("local_steps", "Local steps", help="local training steps per client and round"),
    Hyper(
        "post_iterations",
        "Stage-2 iterations",
        help="fine-tuning and distillation micro-batches after FL (a step every grad_accum)",
    ),
    Hyper("kd_lambda", "λ (distillation weight)", integer=False, help="stage-2 KD weight"),
    Hyper("eval_every", "Evaluate every … rounds"),
)


def margin_key(family: str) -> str:
    return f"margins.{family}"


def field_of(where: str, families: list[str]) -> str:
    """The form field a 422's location (``overrides.rounds``, ``sweep.seed`` …) is about;
    "" for anything else (e.g. the preset's own config), shown above the Submit button."""
    parts = where.split(".")
    if parts[0] in ("name", "preset") and len(parts) == 1:
        return parts[0]
    if parts[0] == "algorithm" or where == "sweep.algorithm":
        return "algorithm"
    if parts[0] in ("overrides", "sweep") and len(parts) > 1:
        key = ".".join(parts[1:])
        if key == "seed":
            return "seed"
        if key.startswith("margins."):
            family = parts[2]
            return margin_key(family) if family in families else "margins"
        if key == "margins":
            return "margins"
        if key in {hyper.key for hyper in HYPERPARAMETERS}:
            return key
    return ""


def parse_seeds(text: str) -> list[int]:
    """ "42" → [42]; "41, 42 43" → [41, 42, 43]; raises ValueError on anything else."""
    parts = text.replace(",", " ").split()
    return [int(part) for part in parts]


def request_body(
    algorithms: list[str], seeds: list[int], values: dict[str, Any]
) -> tuple[str | None, dict[str, Any], dict[str, list[Any]]]:
    """(algorithm, overrides, sweep) as the API takes them: one algorithm or seed is set
    directly, several become sweep keys; fields left empty keep the preset's values."""
    overrides: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    margins = {}
    for key, value in values.items():
        if value is None:
            continue
        if key.startswith("margins."):
            margins[key.split(".", 1)[1]] = float(value)
        else:
            overrides[key] = value
    if margins:
        overrides["margins"] = margins
    algorithm = algorithms[0] if len(algorithms) == 1 else None
    if len(algorithms) > 1:
        sweep["algorithm"] = list(algorithms)
    if len(seeds) == 1:
        overrides["seed"] = seeds[0]
    elif seeds:
        sweep["seed"] = seeds
    return algorithm, overrides, sweep


def sweep_preview(algorithms: list[str], seeds: list[int], preset: CatalogPreset) -> str:
    """ "6 runs will be queued: tap, fedavg for seeds 41, 42, 43." """
    algos = algorithms or [f"{preset['defaults']['algorithm']} (preset)"]
    seed_list = seeds or []
    count = len(algos) * max(len(seed_list), 1)
    seed_text = f"seeds {', '.join(map(str, seed_list))}" if seed_list else "the preset's seed"
    noun = "run" if count == 1 else "runs"
    return f"**{count} {noun}** will be queued: {', '.join(algos)} for {seed_text}."


def preset_summary(preset: CatalogPreset) -> str:
    defaults = preset["defaults"]
    facts = [
        preset["description"],
        f"algorithm {defaults['algorithm']}",
        f"{defaults['rounds']} rounds",
        f"{defaults['clients']} clients",
        f"backbone {defaults['backbone']}",
    ]
    return " · ".join(fact for fact in facts if fact)


def algorithm_help(catalog: Catalog) -> str:
    """Each algorithm with its one-line description, for the Algorithm field's help."""
    lines = [f"- **{a['name']}**: {a['description']}" for a in catalog["algorithms"]]
    return "Several algorithms start a sweep: one run per algorithm and seed.\n\n" + "\n".join(
        lines
    )


def algorithm_caption(chosen: list[str], catalog: Catalog, preset: CatalogPreset) -> str:
    """What the chosen algorithms (or the preset's, when none is chosen) do, one line each."""
    described = {a["name"]: a["description"] for a in catalog["algorithms"]}
    names = chosen or [preset["defaults"]["algorithm"]]
    return "  \n".join(f"**{n}**: {described[n]}" for n in names if n in described)


def show_created(experiment: Experiment) -> None:
    runs = experiment.get("runs", [])
    st.success(
        f"Experiment #{experiment['id']} **{experiment.get('name', '')}** created with "
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}.",
        icon=":material/check_circle:",
    )
    st.page_link(ui.RUNS_PAGE, label="Watch them on the Runs page", icon=":material/table_rows:")
    for run in runs:
        st.page_link(
            ui.RUN_PAGE,
            label=f"Open run #{run['id']} ({run['algorithm']}, seed {run['seed']})",
            icon=":material/monitoring:",
            query_params={"run": str(run["id"])},
        )


def number_field(hyper: Hyper, preset: CatalogPreset) -> Any:
    default = preset["defaults"].get(hyper.key)
    # No min/max here on purpose: the API's validation is the one that counts.
    return st.number_input(
        hyper.label,
        value=None,
        step=1 if hyper.integer else 0.0001,
        format=None if hyper.integer else "%.4g",
        placeholder=f"the preset's ({default})" if default is not None else "the preset's",
        help=hyper.help or None,
        key=f"submit_{hyper.key}",
    )


st.title("Submit an experiment")

with ui.api_errors():
    catalog = data.catalog()
presets = catalog["presets"]
families = catalog["task_families"]
if not presets:
    st.warning("The API offers no presets, so there is nothing to start.")
    st.stop()
by_name = {preset["name"]: preset for preset in presets}

# An empty slot under each field, filled with the API's message about that field (if any).
slots: dict[str, Any] = {}

name = st.text_input("Name", placeholder="optional: defaults to the preset's name")
slots["name"] = st.empty()

preset = st.selectbox("Preset", list(by_name))
chosen = by_name[preset]
st.caption(preset_summary(chosen))
slots["preset"] = st.empty()

left, right = st.columns(2)
with left:
    # The catalog's algorithms; a name typed in anyway is for the API to refuse.
    algorithms = st.multiselect(
        "Algorithm",
        [a["name"] for a in catalog["algorithms"]],
        placeholder=f"the preset's ({chosen['defaults']['algorithm']})",
        accept_new_options=True,
        help=algorithm_help(catalog),
    )
    st.caption(algorithm_caption(algorithms, catalog, chosen))
    slots["algorithm"] = st.empty()
with right:
    seeds_text = st.text_input(
        "Seed", placeholder="the preset's", help="Several seeds (41, 42, 43) start a sweep."
    )
    slots["seed"] = st.empty()

st.markdown("**Hyperparameters** · empty fields keep the preset's values")
values: dict[str, Any] = {}
for row in ui.batched(HYPERPARAMETERS, 3):
    for column, hyper in zip(st.columns(3), row, strict=False):
        with column:
            values[hyper.key] = number_field(hyper, chosen)
            slots[hyper.key] = st.empty()

st.markdown("**Replacement margins** per task family (TAP) · empty: the backbone's default")
margins = chosen["defaults"]["margins"]
for column, family in zip(st.columns(len(families)), families, strict=True):
    with column:
        values[margin_key(family)] = st.number_input(
            f"Margin: {family.replace('_', ' ')}",
            value=None,
            step=0.001,
            format="%.4g",
            placeholder=f"the preset's ({margins[family]:g})" if family in margins else "default",
            key=f"submit_margin_{family}",
        )
        slots[margin_key(family)] = st.empty()
slots["margins"] = st.empty()

seed_problem = None
try:
    seeds = parse_seeds(seeds_text)
except ValueError:
    seeds, seed_problem = [], "Seeds are whole numbers separated by commas or spaces."
if seed_problem:
    slots["seed"].error(seed_problem)
else:
    st.info(sweep_preview(algorithms, seeds, chosen), icon=":material/format_list_numbered:")

general = st.container()  # messages not about a single field

if st.button("Submit", type="primary", icon=":material/send:", disabled=bool(seed_problem)):
    algorithm, overrides, sweep = request_body(algorithms, seeds, values)
    try:
        experiment = data.api().submit(
            preset, name=name or None, algorithm=algorithm, overrides=overrides, sweep=sweep
        )
    except ApiError as err:
        if err.status != 422:
            with general:
                ui.show_api_error(err)
            st.stop()
        for where, messages in err.field_errors().items():
            field = field_of(where, families)
            if field:
                slots[field].error(" ".join(messages))
            else:  # e.g. a preset's own config, or the request as a whole
                general.error(f"`{where or 'request'}`: " + " ".join(messages))
        st.stop()
    data.forget_runs()
    st.session_state["last_experiment"] = experiment

# Kept in session state so the links stay while the person edits the next submission.
if "last_experiment" in st.session_state:
    show_created(st.session_state["last_experiment"])
