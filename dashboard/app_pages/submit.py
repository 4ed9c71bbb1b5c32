"""Submit: start an experiment from a preset, with a few fields overridden.

The API validates everything; its 422 messages appear under the field they are about.
Several seeds ("41, 42, 43") make a sweep: one run per seed.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import data, ui
from dashboard.client import ApiError, Experiment, Preset

KNOWN_ALGORITHMS = ["tap", "fedavg", "local"]  # suggestions; the API has the final word
# Where in the request body a 422 points -> the form field it is about.
FIELD_OF = {
    "name": "name",
    "preset": "preset",
    "algorithm": "algorithm",
    "overrides.seed": "seed",
    "sweep.seed": "seed",
    "overrides.rounds": "rounds",
}


def parse_seeds(text: str) -> list[int]:
    """ "42" → [42]; "41, 42 43" → [41, 42, 43]; raises ValueError on anything else."""
    parts = text.replace(",", " ").split()
    return [int(part) for part in parts]


def request_body(
    seeds: list[int], rounds: float | None
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(overrides, sweep) as the API takes them: one seed overrides, several sweep."""
    overrides: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    if rounds is not None:
        overrides["rounds"] = int(rounds)
    if len(seeds) == 1:
        overrides["seed"] = seeds[0]
    elif seeds:
        sweep["seed"] = seeds
    return overrides, sweep


def preset_summary(preset: Preset) -> str:
    facts = [
        preset.get("description", ""),
        f"algorithm {preset['algorithm']}" if preset.get("algorithm") else "",
        f"{preset['rounds']} rounds" if preset.get("rounds") else "",
        f"{preset['clients']} clients" if preset.get("clients") else "",
        f"backbone {preset['backbone']}" if preset.get("backbone") else "",
    ]
    return " · ".join(fact for fact in facts if fact)


def show_created(experiment: Experiment) -> None:
    runs = experiment.get("runs", [])
    st.success(
        f"Experiment #{experiment['id']} **{experiment.get('name', '')}** created with "
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}.",
        icon=":material/check_circle:",
    )
    for run in runs:
        st.page_link(
            ui.RUN_PAGE,
            label=f"Open run #{run['id']} ({run['algorithm']}, seed {run['seed']})",
            icon=":material/monitoring:",
            query_params={"run": str(run["id"])},
        )


st.title("Submit an experiment")

with ui.api_errors():
    presets = data.presets()
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
    algorithm = st.selectbox(
        "Algorithm",
        KNOWN_ALGORITHMS,
        index=None,
        placeholder=f"the preset's ({chosen['algorithm']})"
        if chosen.get("algorithm")
        else "the preset's",
        accept_new_options=True,
    )
    slots["algorithm"] = st.empty()
    seeds_text = st.text_input(
        "Seed", placeholder="the preset's", help="Several seeds (41, 42, 43) start a sweep."
    )
    slots["seed"] = st.empty()
with right:
    # No min/max here on purpose: the API's validation is the one that counts.
    rounds = st.number_input(
        "Rounds",
        value=None,
        step=1,
        placeholder=f"the preset's ({chosen['rounds']})"
        if chosen.get("rounds")
        else "the preset's",
    )
    slots["rounds"] = st.empty()

general = st.container()  # messages not about a single field

if st.button("Submit", type="primary", icon=":material/send:"):
    try:
        seeds = parse_seeds(seeds_text)
    except ValueError:
        slots["seed"].error("Seeds are whole numbers separated by commas or spaces.")
        st.stop()
    overrides, sweep = request_body(seeds, rounds)
    try:
        experiment = data.api().create_experiment(
            preset, name=name or None, algorithm=algorithm, overrides=overrides, sweep=sweep
        )
    except ApiError as err:
        if err.status != 422:
            with general:
                ui.show_api_error(err)
            st.stop()
        for where, messages in err.field_errors().items():
            field = FIELD_OF.get(where)
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
