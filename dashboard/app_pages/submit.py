"""Submit: start an experiment from a preset, with its main hyperparameters overridden.

The algorithms, task families and presets (with the values each field keeps when left
empty) are the API's catalog. Any other config field can be set in "Extra overrides", one
``dotted.key=value`` per line. The API validates everything: the form asks it for a
preview (``POST /experiments/preview``) as it is filled in, which says how many runs would
be queued and with what config, and its 422 messages appear under the field (or the line
of the extra overrides) they are about. Submit queues the previewed runs.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from backend.client import ApiError
from backend.client.types import Catalog, CatalogPreset, Experiment, ExperimentPreview
from dashboard import data, ui

EXTRA = "extra"  # the slot under the extra overrides box
EXTRA_HELP = (
    "Any other config field, one `dotted.key=value` per line, e.g. "
    "`backbone.hidden_size=64` or `margins.image_classification=0.02`. Values are read as "
    "YAML (numbers, true/false, [lists]); a line here wins over the field above it."
)


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


@dataclass(frozen=True)
class ExtraOverrides:
    """The extra overrides box, parsed: the values, the line of each key, what is wrong."""

    values: dict[str, Any]
    lines: dict[str, int]
    problems: list[str]


def parse_extra(text: str) -> ExtraOverrides:
    """ "backbone.hidden_size=64" per line → {"backbone.hidden_size": 64}; blank lines and
    lines starting with # are skipped. Values are YAML scalars or lists, as ``tapfl run
    --set`` reads them."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            problems.append(f"line {number}: `{stripped}` is not of the form `dotted.key=value`")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            problems.append(f"line {number}: the value of `{key}` is not valid YAML")
            continue
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # YAML 1.1 reads "1e-3" as a string
                value = float(value)
        if key in lines:
            problems.append(f"line {number}: `{key}` is already set on line {lines[key]}")
            continue
        values[key], lines[key] = value, number
    return ExtraOverrides(values, lines, problems)


def margin_key(family: str) -> str:
    return f"margins.{family}"


def extra_key_of(where: str, extra_keys: list[str]) -> str | None:
    """The extra override a 422's location (``overrides.backbone.hidden_size``) is about:
    the most specific key on its path, if any."""
    if not where.startswith("overrides."):
        return None
    path = where.split(".")[1:]
    on_path = [
        key
        for key in extra_keys
        if path[: len(key.split("."))] == key.split(".") or key.split(".")[: len(path)] == path
    ]
    return max(on_path, key=lambda key: len(key.split(".")), default=None)


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
        if key in ("seed", "pairs"):
            return key
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


def pairs_caption(preset: CatalogPreset) -> str:
    """The preset's modality-task pairs in the order the setting ``pairs`` keeps them."""
    order = preset.get("pairs") or []
    if not order:
        return ""
    kept = ", ".join(f"{i} = {pair}" for i, pair in enumerate(order, start=1))
    return f"`pairs=M` keeps the first M of: {kept} (docs/STUDIES.md)"


def request_body(
    algorithms: list[str],
    seeds: list[int],
    values: dict[str, Any],
    extra: dict[str, Any] | None = None,
    pairs: list[int] | None = None,
) -> tuple[str | None, dict[str, Any], dict[str, list[Any]]]:
    """(algorithm, overrides, sweep) as the API takes them: one algorithm, seed or number
    of pairs is set directly, several become sweep keys; fields left empty keep the
    preset's values; the extra overrides come last, so they win."""
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
    if pairs and len(pairs) == 1:
        overrides["pairs"] = pairs[0]
    elif pairs:
        sweep["pairs"] = list(pairs)
    overrides.update(extra or {})
    return algorithm, overrides, sweep


def sweep_preview(
    algorithms: list[str],
    seeds: list[int],
    preset: CatalogPreset,
    runs: int | None = None,
    pairs: list[int] | None = None,
) -> str:
    """ "6 runs will be queued: tap, fedavg for seeds 41, 42, 43." ``runs`` is the API's
    count when known (the form's own count otherwise)."""
    algos = algorithms or [f"{preset['defaults']['algorithm']} (preset)"]
    seed_list = seeds or []
    count = runs if runs is not None else len(algos) * max(len(seed_list), 1)
    seed_text = f"seeds {', '.join(map(str, seed_list))}" if seed_list else "the preset's seed"
    noun = "run" if count == 1 else "runs"
    pairs_text = f", pairs {', '.join(map(str, pairs))}" if pairs else ""
    return f"**{count} {noun}** will be queued: {', '.join(algos)} for {seed_text}{pairs_text}."


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"backbone": {"name": "x"}} → {"backbone.name": "x"}; lists stay whole."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def changed_keys(preset_config: dict[str, Any], config: dict[str, Any]) -> pd.DataFrame:
    """The config fields a submission changes: key, the preset's value, the run's value."""
    before, after = flatten(preset_config), flatten(config)
    keys = [key for key in after if before.get(key) != after[key]]
    keys += [key for key in before if key not in after]

    def shown(value: Any) -> str:
        return "" if value is None else json.dumps(value) if not isinstance(value, str) else value

    return pd.DataFrame(
        {
            "key": keys,
            "preset": [shown(before.get(key)) for key in keys],
            "this run": [shown(after.get(key)) for key in keys],
        }
    )


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
        placeholder=f"the preset's ({default:g})" if default is not None else "the preset's",
        help=hyper.help or None,
        key=f"submit_{hyper.key}",
    )


def place_errors(
    err: ApiError, slots: dict[str, Any], general: Any, families: list[str], extra: ExtraOverrides
) -> None:
    """Each of the API's 422 messages under the field, or the extra override line, it is
    about; the rest (e.g. the preset's own config) above the Submit button."""
    by_slot: dict[str, list[str]] = {}
    for where, messages in err.field_errors().items():
        key = extra_key_of(where, list(extra.lines))
        if key is not None:
            by_slot.setdefault(EXTRA, []).append(
                f"line {extra.lines[key]} · `{key}`: " + " ".join(messages)
            )
        elif field := field_of(where, families):
            by_slot.setdefault(field, []).append(" ".join(messages))
        else:
            general.error(f"`{where or 'request'}`: " + " ".join(messages))
    for slot, messages in by_slot.items():
        slots[slot].error("  \n".join(messages))


def show_preview(preview: ExperimentPreview, preset_config: dict[str, Any] | None) -> None:
    """The first run's resolved config: what it changes from the preset, and all of it."""
    label = "Resolved config" + (" of the first run" if preview["runs"] > 1 else "")
    with st.expander(label, icon=":material/tune:"):
        if preset_config is not None:
            changed = changed_keys(preset_config, preview["config"])
            if changed.empty:
                st.caption("The preset as it is: no field changed.")
            else:
                st.caption(f"{len(changed)} field(s) changed from the preset")
                st.dataframe(changed, hide_index=True)
        st.json(preview["config"], expanded=1)


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
    # Only the catalog's algorithms: a typed prefix picks among them, it never adds a name.
    algorithms = st.multiselect(
        "Algorithm",
        [a["name"] for a in catalog["algorithms"]],
        placeholder=f"the preset's ({chosen['defaults']['algorithm']})",
        help=algorithm_help(catalog),
    )
    st.caption(algorithm_caption(algorithms, catalog, chosen))
    slots["algorithm"] = st.empty()
with right:
    seeds_text = st.text_input(
        "Seed",
        placeholder=f"the preset's ({chosen['defaults']['seed']})",
        help="Several seeds (41, 42, 43) start a sweep.",
    )
    slots["seed"] = st.empty()

pairs_text = st.text_input(
    "Modality-task pairs",
    placeholder=f"all of the preset's ({len(chosen.get('pairs') or [])})",
    help="Keep only the first M modality-task pairs of the preset's scenario; several "
    "values (1, 2, 3, 4) start a sweep. Clients left without a task copy a donor's.",
    key="submit_pairs",
)
st.caption(pairs_caption(chosen))
slots["pairs"] = st.empty()

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

extra = parse_extra(
    st.text_area(
        "Extra overrides",
        placeholder="backbone.hidden_size=64\nmargins.image_classification=0.02",
        help=EXTRA_HELP,
        key="submit_extra",
    )
)
slots[EXTRA] = st.empty()

problems = bool(extra.problems)
if extra.problems:
    slots[EXTRA].error("  \n".join(extra.problems))
try:
    seeds = parse_seeds(seeds_text)
except ValueError:
    seeds, problems = [], True
    slots["seed"].error("Seeds are whole numbers separated by commas or spaces.")
try:
    pairs_counts = parse_seeds(pairs_text)
except ValueError:
    pairs_counts, problems = [], True
    slots["pairs"].error("Pairs are whole numbers separated by commas or spaces.")

general = st.container()  # messages not about a single field
algorithm, overrides, sweep = request_body(
    algorithms, seeds, values, extra.values, pairs=pairs_counts
)
preview: ExperimentPreview | None = None
if not problems:
    # What Submit would queue, validated by the API as the form is filled in.
    try:
        preview = data.preview(
            preset, name=name or None, algorithm=algorithm, overrides=overrides, sweep=sweep
        )
    except ApiError as err:
        if err.status == 422:
            place_errors(err, slots, general, families, extra)
        else:
            with general:
                ui.show_api_error(err)
if preview is not None:
    st.info(
        sweep_preview(algorithms, seeds, chosen, preview["runs"], pairs_counts),
        icon=":material/format_list_numbered:",
    )
    try:
        preset_config = data.preset_config(preset)
    except ApiError:
        preset_config = None  # the full config below still says everything
    show_preview(preview, preset_config)

if st.button(
    "Submit", type="primary", icon=":material/send:", disabled=preview is None, key="submit"
):
    try:
        experiment = data.api().submit(
            preset, name=name or None, algorithm=algorithm, overrides=overrides, sweep=sweep
        )
    except ApiError as err:
        if err.status == 422:
            place_errors(err, slots, general, families, extra)
        else:
            with general:
                ui.show_api_error(err)
        st.stop()
    data.forget_runs()
    st.session_state["last_experiment"] = experiment

# Kept in session state so the links stay while the person edits the next submission.
if "last_experiment" in st.session_state:
    show_created(st.session_state["last_experiment"])
