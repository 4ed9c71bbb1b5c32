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
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    return pd.DataFrame([[_value(c) for c in row] for row in rows], columns=header)


def tables(at: AppTest) -> list[pd.DataFrame]:
    """The page's Markdown tables, in page order."""
    return [read(m.value) for m in at.markdown if m.value.lstrip().startswith("|")]


def colours(text: str, column: str) -> list[str | None]:
    """The background colour of each cell of ``column`` (None: not coloured)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    at = [c.strip() for c in CELL.findall(lines[0][1:])].index(column)
    out = []
    for line in lines[2:]:
        found = COLOURED.match(CELL.findall(line[1:])[at].strip())
        out.append(found.group(1) if found else None)
    return out


def _cells(line: str) -> list[str]:
    out = []
    for cell in CELL.findall(line[1:]):
        cell = cell.strip()
        coloured = COLOURED.match(cell)
        out.append(ESCAPE.sub(r"\1", coloured.group(2) if coloured else cell))
    return out


def _value(cell: str) -> Any:
    if cell == MISSING:
        return math.nan
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell
