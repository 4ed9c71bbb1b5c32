"""Reading the dashboard's Markdown tables back (``dashboard.markdown_table``) as frames,
with numbers as numbers, the dash of a missing value as NaN, and a coloured cell
(``:green-background[win]``) as its text, with its colour in ``colours``."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
from streamlit.testing.v1 import AppTest

from dashboard.markdown_table import MISSING

CELL = re.compile(r"((?:\\.|[^|\\])*)\|")  # up to the next pipe that is not escaped
ESCAPE = re.compile(r"\\(.)")
COLOURED = re.compile(r"^:([a-z]+)-background\[(.*)\]$")


def read(text: str) -> pd.DataFrame:
    header, *rows = [[_text(cell) for cell in row] for row in _rows(text)]
    return pd.DataFrame([[_value(c) for c in row] for row in rows], columns=header)


def tables(at: AppTest) -> list[pd.DataFrame]:
    """The page's Markdown tables, in page order."""
    return [read(m.value) for m in at.markdown if m.value.lstrip().startswith("|")]


def colours(text: str, column: str) -> list[str | None]:
    """The background colour of each cell of ``column`` (None: not coloured)."""
    header, *rows = _rows(text)
    at = [_text(cell) for cell in header].index(column)
    found = [COLOURED.match(row[at]) for row in rows]
    return [match.group(1) if match else None for match in found]


def _rows(text: str) -> list[list[str]]:
    """The header's and every row's cells as written (the alignment line left out)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    return [[cell.strip() for cell in CELL.findall(line[1:])] for line in lines[:1] + lines[2:]]


def _text(cell: str) -> str:
    """A cell's text: its colour and escapes taken off."""
    coloured = COLOURED.match(cell)
    return ESCAPE.sub(r"\1", coloured.group(2) if coloured else cell)


def _value(cell: str) -> Any:
    if cell == MISSING:
        return math.nan
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell
