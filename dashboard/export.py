"""Paper-ready exports of a comparison: the final values as a results table (Markdown,
LaTeX with booktabs, CSV) and the page's figures as PNG and SVG files.

The results table has a row per client, task and metric, a column per group of runs and
"mean ± std" over seeds in each cell, the best group of a row in bold (which way is better
comes from the catalog's ``higher_is_better``); its caption says how many seeds each group
has. Figures are drawn by kaleido in a headless Chrome or Chromium. Nothing here imports
Streamlit or calls the API.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from dashboard.compare import FINAL_COLUMNS, format_mean_std

KEYS = ["client", "task", "metric"]
FORMATS = ("png", "svg")
DIGITS = 4  # as the Compare page shows final values (compare.format_mean_std)
# Exported figures: plotly's default width, the page's small multiples' height or more,
# and twice the pixels in PNGs so that they stay sharp in print.
WIDTH, MIN_HEIGHT, PNG_SCALE = 700, 400, 2
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


class FigureExportError(RuntimeError):
    """A figure could not be drawn to a file (no kaleido, or no Chrome/Chromium for it)."""


@dataclass(frozen=True)
class Results:
    """The final values as a grid: a row per client, task and metric (``rows``), a column
    per group (``groups``, in the comparison's order), and per cell the mean, std and n
    over seeds (NaN where a group has no value) and whether it is the row's best."""

    rows: pd.DataFrame
    groups: list[str]
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    best: pd.DataFrame

    def cells(self) -> pd.DataFrame:
        """ "mean ± std" per cell ("mean" alone for one seed, "" where there is no value)."""
        return pd.DataFrame(
            {
                group: [
                    "" if math.isnan(m) else format_mean_std(float(m), float(s), int(k))
                    for m, s, k in zip(
                        self.mean[group], self.std[group], self.n[group], strict=True
                    )
                ]
                for group in self.groups
            },
            index=self.mean.index,
        )


def results(finals: pd.DataFrame, better: Mapping[str, bool]) -> Results:
    """The grid of ``finals`` (the frame of ``compare.finals_frame``) with the best cell of
    each row: the highest mean where ``better[metric]`` is true, else the lowest. Means that
    read the same at the shown precision are a tie: all of them are bold."""
    missing_columns = [c for c in FINAL_COLUMNS if c not in finals.columns]
    if missing_columns:
        raise ValueError(f"the final values lack the columns {missing_columns}")
    unknown = sorted({str(m) for m in finals["metric"]} - set(better))
    if unknown:
        raise ValueError(f"no direction (higher_is_better) for the metrics {unknown}")
    if finals.empty:
        raise ValueError("no final values to tabulate")
    groups = [str(label) for label in dict.fromkeys(finals["label"])]
    frame = finals.assign(label=finals["label"].astype(str))
    duplicated = frame.duplicated([*KEYS, "label"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise ValueError(
            f"two final values for group {first['label']!r} on client {first['client']}, "
            f"task {first['task']!r}, metric {first['metric']!r}"
        )
    wide = frame.pivot(index=KEYS, columns="label", values=["mean", "std", "n"]).sort_index()
    mean, std, n = (
        wide[part].reindex(columns=groups).astype(float) for part in ("mean", "std", "n")
    )
    shown = mean.round(DIGITS)
    higher = pd.Series([better[str(m)] for m in shown.index.get_level_values("metric")])
    target = shown.max(axis=1).where(higher.to_numpy(), shown.min(axis=1))
    best = shown.eq(target, axis=0) & shown.notna()
    rows = mean.index.to_frame(index=False)
    for part in (mean, std, n, best):
        part.columns.name = None
    return Results(rows=rows, groups=groups, mean=mean, std=std, n=n, best=best)


def seeds_caption(table: Results) -> str:
    """ "mean ± std over 3 seeds (tap, fedavg), 1 seed: no std (local)": the groups' seed
    counts (the most over the group's cells; a range where the cells differ)."""
    by_count: dict[str, list[str]] = {}
    for group in table.groups:
        counts = sorted({int(k) for k in table.n[group].dropna()})
        if not counts:
            continue
        low, high = counts[0], counts[-1]
        if high == 1:
            text = "1 seed: no std"
        else:
            text = f"{low} to {high} seeds" if low != high else f"{high} seeds"
        by_count.setdefault(text, []).append(group)
    parts = [f"{text} ({', '.join(groups)})" for text, groups in by_count.items()]
    return "mean ± std over " + ", ".join(parts) if parts else "no final values"


def _bold_markdown(cell: str, bold: bool) -> str:
    return f"**{cell}**" if bold and cell else cell


def markdown_table(table: Results, *, title: str = "Final values") -> str:
    """A pipe table (groups as columns, the best in bold) and its caption below it, in
    pandoc's ``Table:`` form."""
    cells = table.cells()
    body = pd.DataFrame(
        {
            group: [
                _bold_markdown(c, b) for c, b in zip(cells[group], table.best[group], strict=True)
            ]
            for group in table.groups
        }
    )
    frame = pd.concat([table.rows, body], axis=1)
    text = frame.to_markdown(index=False, disable_numparse=True, colalign=_align(frame))
    return f"{text}\n\nTable: {title}: {seeds_caption(table)}; best in bold.\n"


def _align(frame: pd.DataFrame) -> list[str]:
    return ["left" if c in KEYS else "right" for c in frame.columns]


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``tap_lr`` -> ``tap\\_lr``)."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def latex_table(table: Results, *, title: str = "Final values", label: str = "tab:results") -> str:
    """A booktabs table (``\\toprule``, ``\\midrule``, ``\\bottomrule``): ``\\textbf`` on
    the best cell of each row, task names and groups escaped, caption and label."""
    if not re.fullmatch(r"[A-Za-z0-9:_.-]+", label):
        raise ValueError(f"a LaTeX label takes letters, digits and :_.- only, not {label!r}")
    frame = pd.concat([table.rows, table.cells().reset_index(drop=True)], axis=1)
    bold = pd.concat(
        [
            pd.DataFrame(False, index=table.rows.index, columns=KEYS),
            table.best.reset_index(drop=True),
        ],
        axis=1,
    )
    styler = (
        frame.style.hide(axis="index")
        .format(escape="latex", formatter=lambda cell: str(cell).replace("±", r"$\pm$"))
        .format_index(escape="latex", axis="columns")
        .apply(lambda _: bold.replace({True: "textbf:--rwrap;", False: ""}), axis=None)
    )
    caption = latex_escape(f"{title}: {seeds_caption(table)}; best in bold.")
    return "% needs \\usepackage{booktabs}\n" + styler.to_latex(
        hrules=True,
        column_format="lll" + "r" * len(table.groups),
        position_float="centering",
        caption=caption.replace("±", r"$\pm$"),
        label=label,
    )


def results_csv(table: Results) -> str:
    """The numbers behind the table: per group its mean, std and n over seeds (``tap mean``,
    ``tap std``, ``tap n``), and the row's best groups (``;``-separated on a tie)."""
    frame = table.rows.copy()
    for group in table.groups:
        frame[f"{group} mean"] = table.mean[group].reset_index(drop=True)
        frame[f"{group} std"] = table.std[group].reset_index(drop=True)
        frame[f"{group} n"] = table.n[group].astype("Int64").reset_index(drop=True)
    frame["best"] = [
        ";".join(g for g in table.groups if flags[g]) for _, flags in table.best.iterrows()
    ]
    return frame.to_csv(index=False)


# -- figures -----------------------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r} is not one of {', '.join(FORMATS)}")


def _size(figure: go.Figure) -> tuple[int, int]:
    return WIDTH, max(int(figure.layout.height or 0), MIN_HEIGHT)


def _export_error(err: Exception) -> FigureExportError:
    detail = " ".join(str(err).split())  # plotly's messages span several lines
    return FigureExportError(
        "The figures could not be drawn to files: kaleido draws them in a headless Chrome or "
        "Chromium, which must be installed (`apt-get install chromium`, or `plotly_get_chrome`; "
        f"`BROWSER_PATH` names one elsewhere). The error was: {type(err).__name__}: {detail}"
    )


def standalone(figure: go.Figure) -> go.Figure:
    """A copy of ``figure`` with its legend: a file stands alone, while the page shows one
    legend for all its small multiples."""
    copy = go.Figure(figure)
    copy.update_layout(showlegend=True)
    return copy


def figure_bytes(figure: go.Figure, fmt: str) -> bytes:
    """``figure`` as a PNG or SVG file's bytes."""
    _check_format(fmt)
    width, height = _size(figure)
    try:
        return figure.to_image(
            format=fmt, width=width, height=height, scale=PNG_SCALE if fmt == "png" else 1
        )
    except Exception as err:  # kaleido missing, no browser, the browser failing
        raise _export_error(err) from err


def file_stem(name: str) -> str:
    """A file name for a figure's name: "Client 0 · digits" -> "client-0-digits"."""
    stem = re.sub(r"[^a-z0-9_.]+", "-", name.lower()).strip("-.")
    return stem or "figure"


def figures_zip(figures: Mapping[str, go.Figure], formats: Sequence[str] = FORMATS) -> bytes:
    """A zip of every figure in every format (``client-0-digits.png``, ``….svg``), each
    with its legend; all drawn in one browser session, which is much faster than one
    ``figure_bytes`` per file."""
    if not formats:
        raise ValueError("no figure format asked for")
    for fmt in formats:
        _check_format(fmt)
    stems: dict[str, go.Figure] = {}
    for name, figure in figures.items():
        stem, k = file_stem(name), 2
        while stem in stems:
            stem, k = f"{file_stem(name)}-{k}", k + 1
        stems[stem] = standalone(figure)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buffer, "w") as archive:
        jobs = [(stem, fig, fmt) for stem, fig in stems.items() for fmt in formats]
        paths = [Path(tmp) / f"{stem}.{fmt}" for stem, _, fmt in jobs]
        if jobs:
            sizes = [_size(fig) for _, fig, _ in jobs]
            try:
                pio.write_images(
                    [fig for _, fig, _ in jobs],
                    paths,
                    format=[fmt for _, _, fmt in jobs],
                    width=[w for w, _ in sizes],
                    height=[h for _, h in sizes],
                    scale=[PNG_SCALE if fmt == "png" else 1 for _, _, fmt in jobs],
                )
            except Exception as err:  # kaleido missing, no browser, the browser failing
                raise _export_error(err) from err
        for path in paths:
            archive.write(path, arcname=path.name)
    return buffer.getvalue()
