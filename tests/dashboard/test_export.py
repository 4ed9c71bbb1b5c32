"""The Compare page's exports: the results table (Markdown, LaTeX, CSV) on tiny frames, the
figures as PNG and SVG drawn by kaleido in the system's Chromium, and the page's export
section via AppTest against the real API on the session's sweep (TAP and FedAvg, two seeds)."""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import compare_charts, export
from dashboard.compare import FINAL_COLUMNS
from dashboard.export_ui import PREVIEW_KEY
from tests.dashboard.conftest import Dashboard
from tests.dashboard.test_compare_page import COMPARE, sweep_panels
from tests.dashboard.test_pages import texts

OpenPage = Callable[..., AppTest]
ACC, MSE = "accuracy", "mse"
BETTER = {ACC: True, MSE: False}
TASK = "digits_image_classification"


def finals(*rows: tuple[str, int, str, str, float, float, int]) -> pd.DataFrame:
    """Rows of (label, client, task, metric, mean, std, n); the algorithm is the label."""
    return pd.DataFrame([(label, label, *rest) for label, *rest in rows], columns=FINAL_COLUMNS)


def table_lines(markdown: str) -> list[list[str]]:
    """The pipe table's rows (header first, the alignment row left out) as cell lists."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [cells[0], *cells[2:]]


def cell(markdown: str, row: int, column: str) -> str:
    header, *body = table_lines(markdown)
    return body[row][header.index(column)]


# -- the results table --------------------------------------------------------------------------


def test_bold_goes_to_the_highest_accuracy_and_the_lowest_mse() -> None:
    frame = finals(
        ("tap", 0, TASK, ACC, 0.9, 0.01, 3),
        ("fedavg", 0, TASK, ACC, 0.8, 0.02, 3),
        ("tap", 0, "gen", MSE, 0.2, 0.01, 3),
        ("fedavg", 0, "gen", MSE, 0.1, 0.01, 3),
    )
    markdown = export.markdown_table(export.results(frame, BETTER))
    header, *_ = table_lines(markdown)
    assert header == ["client", "task", "metric", "tap", "fedavg"]
    assert cell(markdown, 0, "task") == "digits_image_classification"
    assert cell(markdown, 0, "tap") == "**0.9000 ± 0.0100**"
    assert cell(markdown, 0, "fedavg") == "0.8000 ± 0.0200"
    assert cell(markdown, 1, "metric") == MSE
    assert cell(markdown, 1, "tap") == "0.2000 ± 0.0100"
    assert cell(markdown, 1, "fedavg") == "**0.1000 ± 0.0100**"


def test_a_tie_makes_both_bold() -> None:
    frame = finals(
        ("tap", 1, TASK, ACC, 0.75, 0.01, 2),
        ("fedavg", 1, TASK, ACC, 0.75, 0.03, 2),
        ("local", 1, TASK, ACC, 0.5, 0.01, 2),
    )
    table = export.results(frame, BETTER)
    assert table.best.iloc[0].to_dict() == {"tap": True, "fedavg": True, "local": False}
    markdown = export.markdown_table(table)
    assert cell(markdown, 0, "tap").startswith("**") and cell(markdown, 0, "fedavg").startswith(
        "**"
    )
    assert "best" in export.results_csv(table) and "tap;fedavg" in export.results_csv(table)


def test_a_missing_cell_is_empty_and_never_best() -> None:
    frame = finals(
        ("tap", 0, TASK, ACC, 0.9, 0.01, 2),
        ("local", 0, TASK, ACC, 0.7, 0.01, 2),
        ("tap", 1, TASK, ACC, 0.6, 0.01, 2),  # local has no value on client 1
    )
    table = export.results(frame, BETTER)
    markdown = export.markdown_table(table)
    assert cell(markdown, 1, "client") == "1"
    assert cell(markdown, 1, "local") == ""
    assert cell(markdown, 1, "tap") == "**0.6000 ± 0.0100**"
    assert not table.best.loc[(1, TASK, ACC), "local"]
    assert "&  \\\\" in export.latex_table(table)  # an empty LaTeX cell, row still complete


def test_the_caption_counts_the_seeds_of_each_group() -> None:
    frame = finals(
        ("tap", 0, TASK, ACC, 0.9, 0.01, 3),
        ("fedavg", 0, TASK, ACC, 0.8, 0.02, 2),
        ("local", 0, TASK, ACC, 0.7, math.nan, 1),
    )
    table = export.results(frame, BETTER)
    caption = "mean ± std over 3 seeds (tap), 2 seeds (fedavg), 1 seed: no std (local)"
    assert export.seeds_caption(table) == caption
    assert caption in export.markdown_table(table)
    assert cell(export.markdown_table(table), 0, "local") == "0.7000"  # one seed: no ± std
    same = finals(("tap", 0, TASK, ACC, 0.9, 0.01, 3), ("fedavg", 0, TASK, ACC, 0.8, 0.02, 3))
    assert export.seeds_caption(export.results(same, BETTER)) == (
        "mean ± std over 3 seeds (tap, fedavg)"
    )


def latex_braces_balance(latex: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}]", "", latex):  # \{ and \} are escaped characters
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_a_booktabs_table_with_escaped_names() -> None:
    frame = finals(
        ("tap_lr", 0, TASK, ACC, 0.9, 0.01, 3),
        ("fedavg", 0, TASK, ACC, 0.8, 0.02, 3),
        ("tap_lr", 0, "text_to_image_generation", MSE, 0.2, 0.01, 3),
        ("fedavg", 0, "text_to_image_generation", MSE, 0.1, 0.01, 3),
    )
    latex = export.latex_table(export.results(frame, BETTER), title="Final 50%", label="tab:x")
    assert latex_braces_balance(latex)
    assert re.search(r"(?<!\\)_", latex) is None  # every underscore escaped
    assert r"digits\_image\_classification" in latex and r"tap\_lr" in latex
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\label{tab:x}"):
        assert command in latex
    assert r"\caption{Final 50\%: mean $\pm$ std over 3 seeds (tap\_lr, fedavg)" in latex
    assert latex.count(r"\begin{") == latex.count(r"\end{")
    assert r"\textbf{0.9000 $\pm$ 0.0100}" in latex
    assert r"\textbf{0.1000 $\pm$ 0.0100}" in latex
    assert r"\textbf{0.8000" not in latex and r"\textbf{0.2000" not in latex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(tmp_path: Path) -> None:
    frame = finals(("tap", 0, TASK, ACC, 0.9, 0.01, 3), ("fedavg", 0, TASK, ACC, 0.8, 0.02, 3))
    table = export.latex_table(export.results(frame, BETTER))
    source = tmp_path / "t.tex"
    source.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
        f"{table}\n\\end{{document}}\n"
    )
    subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "t.pdf").stat().st_size > 0


def test_the_csv_holds_mean_std_and_n_per_cell() -> None:
    frame = finals(
        ("tap", 0, TASK, ACC, 0.9, 0.01, 3),
        ("local", 0, TASK, ACC, 0.7, math.nan, 1),
        ("tap", 1, TASK, ACC, 0.6, 0.02, 3),
    )
    csv = pd.read_csv(io.StringIO(export.results_csv(export.results(frame, BETTER))))
    assert list(csv.columns) == [
        *["client", "task", "metric"],
        *["tap mean", "tap std", "tap n", "local mean", "local std", "local n", "best"],
    ]
    assert csv.loc[0, ["tap mean", "tap std", "tap n"]].tolist() == [0.9, 0.01, 3]
    assert csv.loc[0, "local n"] == 1 and math.isnan(csv.loc[0, "local std"])
    assert math.isnan(csv.loc[1, "local mean"])
    assert list(csv["best"]) == ["tap", "tap"]


def test_bad_input_is_named() -> None:
    frame = finals(("tap", 0, TASK, "bleu", 0.9, 0.01, 3))
    with pytest.raises(ValueError, match=r"higher_is_better.*\['bleu'\]"):
        export.results(frame, BETTER)
    with pytest.raises(ValueError, match="lack the columns"):
        export.results(frame.drop(columns="std"), {"bleu": True})
    with pytest.raises(ValueError, match="no final values"):
        export.results(finals(), BETTER)
    twice = finals(("tap", 0, TASK, ACC, 0.9, 0.01, 3), ("tap", 0, TASK, ACC, 0.8, 0.01, 3))
    with pytest.raises(ValueError, match="two final values for group 'tap'"):
        export.results(twice, BETTER)


# -- figures ------------------------------------------------------------------------------------


def tiny_figure(name: str = "tap") -> go.Figure:
    return go.Figure(go.Scatter(x=[1, 2, 3], y=[0.2, 0.5, 0.7], name=name))


@pytest.mark.integration
def test_a_figure_exports_to_png_and_svg() -> None:
    assert export.figure_bytes(tiny_figure(), "png").startswith(b"\x89PNG")
    assert b"<svg" in export.figure_bytes(tiny_figure(), "svg")[:200]
    with pytest.raises(ValueError, match="'eps' is not one of png, svg"):
        export.figure_bytes(tiny_figure(), "eps")


@pytest.mark.integration
def test_the_zip_holds_every_figure_in_both_formats() -> None:
    figures = {
        "Client 0 · digits": tiny_figure(),
        "Personalization vs generalization": tiny_figure(),
    }
    archive = zipfile.ZipFile(io.BytesIO(export.figures_zip(figures)))
    assert sorted(archive.namelist()) == [
        "client-0-digits.png",
        "client-0-digits.svg",
        "personalization-vs-generalization.png",
        "personalization-vs-generalization.svg",
    ]
    assert archive.read("client-0-digits.png").startswith(b"\x89PNG")
    svg = archive.read("client-0-digits.svg").decode()
    assert "<svg" in svg and ">tap<" in svg  # the legend a file gets to stand alone


def test_without_a_browser_the_export_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "chromium"))  # where there is none
    with pytest.raises(export.FigureExportError, match="Chrome or Chromium"):
        export.figure_bytes(tiny_figure(), "png")
    with pytest.raises(export.FigureExportError, match="Chrome or Chromium"):
        export.figures_zip({"a": tiny_figure()})


# -- the page's export section ------------------------------------------------------------------


def downloads(at: AppTest) -> dict[str, object]:
    return {button.label: button for button in at.download_button}


def test_the_compare_page_exports_its_table_and_figures(
    open_page: OpenPage, dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []  # plotly figures built: only for the export, once asked for
    for name in ("compare_figure", "tradeoff_figure"):
        real = getattr(compare_charts, name)
        monkeypatch.setattr(
            compare_charts,
            name,
            lambda *a, _real=real, _name=name, **k: built.append(_name) or _real(*a, **k),
        )
    at = open_page(COMPARE, group=dashboard.runs.sweep.group_id)
    labels = set(downloads(at))
    assert {"Markdown table", "LaTeX table", "Table numbers (CSV)"} <= labels
    assert not any("Table: " in code for code in texts(at, "code"))  # shown once opened
    at.session_state[PREVIEW_KEY] = True
    at.run()
    markdown = next(code for code in texts(at, "code") if "Table: " in code)
    header, *body = table_lines(markdown)
    assert header == ["client", "task", "metric", "tap", "fedavg"]
    assert sorted((int(row[0]), row[1]) for row in body) == sweep_panels(dashboard)
    assert all(sum(c.startswith("**") for c in row[3:]) >= 1 for row in body)  # a best per row
    assert "mean ± std over 2 seeds (tap, fedavg)" in markdown
    assert not any(label.startswith("Figures") for label in labels)  # drawn only when asked
    assert not built  # the page draws Vega-Lite specs

    prepare = next(b for b in at.button if b.key == "export_prepare_figures")
    at = prepare.click().run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    assert not texts(at, "error")
    assert any(label.startswith("Figures (zip of") for label in downloads(at))
    assert {"compare_figure", "tradeoff_figure"} <= set(built)
