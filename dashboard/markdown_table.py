"""Static tables as Markdown.

``st.table`` makes the browser load Streamlit's Arrow formatting code (0.7 MB of script
with moment and numbro) and parse it while the page's first chart is being drawn; on the
Run page that cost the first chart about 0.4 s (``benchmarks/dashboard_browser.py``).
Streamlit's Markdown renderer is loaded by every page already, and draws the same table.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

MISSING = "\u2013"  # an en dash


def markdown_table(
    frame: pd.DataFrame,
    digits: int = 4,
    *,
    backgrounds: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """``frame`` (its index left out) as a GitHub-flavoured Markdown table: floats with
    ``digits`` decimals, missing values as a dash, numbers right-aligned.

    ``backgrounds``: column -> cell text -> one of Streamlit's Markdown colours, drawn as
    the cell's background (``:green-background[win]``)."""
    cells = pd.DataFrame(index=frame.index)
    align = []
    for column in frame.columns:
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if pd.api.types.is_float_dtype(values):
            shown = [MISSING if pd.isna(v) else f"{v:.{digits}f}" for v in values]
        else:
            # A pipe would end the cell; Streamlit's Markdown reads ``:name:`` as an icon.
            shown = [MISSING if pd.isna(v) else _escape(str(v)) for v in values]
        if backgrounds and column in backgrounds:
            colours = backgrounds[column]
            shown = [
                f":{colours[str(v)]}-background[{cell}]" if str(v) in colours else cell
                for v, cell in zip(values, shown, strict=True)
            ]
        cells[column] = shown
        align.append("right" if numeric else "left")
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", r"\|").replace(":", r"\:")
