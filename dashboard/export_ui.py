"""The Compare page's export section: the results table as Markdown, LaTeX and CSV files,
and the page's figures as a zip of PNG and SVG files (``dashboard.export``). Figures are
drawn only when asked for, since a headless browser takes seconds to draw them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import export

FIGURES_STATE = "export_figures"  # (fingerprint of the figures, their zip)
PREVIEW_KEY = "export_preview"  # the Markdown preview's expander


@dataclass(frozen=True)
class LazyFigure:
    """A chart of the page for the export: the Vega-Lite spec the page drew, and how to
    build its plotly figure, which happens only once the figures are asked for."""

    spec: dict[str, Any]
    build: Callable[[], go.Figure]


def _fingerprint(figures: Mapping[str, LazyFigure]) -> str:
    digest = hashlib.sha256()
    for name, figure in figures.items():
        digest.update(name.encode())
        digest.update(json.dumps(figure.spec, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def download(
    column: DeltaGenerator, label: str, data: str | bytes, file_name: str, mime: str, key: str
) -> None:
    column.download_button(
        label,
        data=data,
        file_name=file_name,
        mime=mime,
        icon=":material/download:",
        on_click="ignore",
        key=key,
    )


def table_downloads(
    finals: pd.DataFrame, better: Mapping[str, bool], name: str, title: str
) -> None:
    if finals.empty:
        st.caption("No final values to export yet.")
        return
    try:
        table = export.results(finals, better)
    except ValueError as err:
        st.error(f"The results table cannot be made: {err}", icon=":material/error:")
        return
    markdown = export.markdown_table(table, title=title)
    # Shown once opened: the browser's code highlighter is 1.5 MB of script to load.
    preview = st.expander(
        "Markdown preview", key=PREVIEW_KEY, icon=":material/preview:", on_change="rerun"
    )
    with preview:
        if preview.open:
            st.code(markdown, language="markdown")
    md_col, tex_col, csv_col = st.columns(3)
    download(md_col, "Markdown table", markdown, f"{name}.md", "text/markdown", "export_md")
    latex = export.latex_table(table, title=title, label=f"tab:{export.file_stem(name)}")
    download(tex_col, "LaTeX table", latex, f"{name}.tex", "application/x-tex", "export_tex")
    csv = export.results_csv(table)
    download(csv_col, "Table numbers (CSV)", csv, f"{name}-table.csv", "text/csv", "export_csv")


def figure_downloads(figures: Mapping[str, LazyFigure], name: str) -> None:
    if not figures:
        st.caption("No figures to export.")
        return
    fingerprint = _fingerprint(figures)
    ready = st.session_state.get(FIGURES_STATE)
    if ready is None or ready[0] != fingerprint:
        if not st.button(
            f"Prepare the {len(figures)} figures (PNG and SVG)",
            icon=":material/image:",
            key="export_prepare_figures",
        ):
            return
        with st.spinner("Drawing the figures…"):
            try:
                built = {title: figure.build() for title, figure in figures.items()}
                ready = (fingerprint, export.figures_zip(built))
            except export.FigureExportError as err:
                st.error(str(err), icon=":material/error:")
                return
        st.session_state[FIGURES_STATE] = ready
    st.download_button(
        f"Figures (zip of {len(figures)}, PNG and SVG)",
        data=ready[1],
        file_name=f"{name}-figures.zip",
        mime="application/zip",
        icon=":material/download:",
        on_click="ignore",
        key="export_figures_zip",
    )


def export_section(
    finals: pd.DataFrame,
    better: Mapping[str, bool],
    figures: Mapping[str, LazyFigure],
    *,
    name: str = "compare",
    title: str = "Final values",
) -> None:
    """Downloads of the final values (``compare.finals_frame``) as a results table, with a
    preview of its Markdown, and of ``figures`` (name -> figure) as PNG and SVG files."""
    st.subheader("Export")
    st.caption(
        "The final values as a table for a paper (groups as columns, the best in bold, the "
        "seeds per group in the caption) and the figures above as files."
    )
    table_downloads(finals, better, name, title)
    figure_downloads(figures, name)
