"""Static tables as Markdown: what the page draws reads back as the frame it was given."""

from __future__ import annotations

import math

import pandas as pd

from dashboard.markdown_table import MISSING, markdown_table
from tests.dashboard import markdown


def test_a_table_reads_back_with_four_decimals_and_missing_values_as_a_dash() -> None:
    frame = pd.DataFrame(
        {
            "client": [0, 12],
            "task": ["digits_image_classification", "shapes_vqa"],
            "global": [0.123456, math.nan],
            "personal-global": [-1234.56789, 0.5],
        }
    )
    text = markdown_table(frame)
    assert "nan" not in text and MISSING in text
    back = markdown.read(text)
    assert list(back.columns) == list(frame.columns)
    assert back["client"].tolist() == [0, 12] and back["task"].tolist() == frame["task"].tolist()
    assert back["global"][0] == 0.1235 and math.isnan(back["global"][1])
    assert back["personal-global"].tolist() == [-1234.5679, 0.5]


def test_numbers_are_right_aligned_and_text_left_aligned() -> None:
    text = markdown_table(pd.DataFrame({"task": ["a"], "value": [1.0], "round": [3]}))
    task, value, round_ = (c.strip() for c in text.splitlines()[1].strip("|").split("|"))
    assert task.startswith(":") and not task.endswith(":")
    assert all(c.endswith(":") and not c.startswith(":") for c in (value, round_))


def test_a_pipe_or_a_colon_in_a_name_neither_splits_the_cell_nor_makes_an_icon() -> None:
    names = ["a|b", ":material/home:", "back\\slash"]
    text = markdown_table(pd.DataFrame({"task": names, "value": [1.0, 2.0, 3.0]}))
    assert ":material/home:" not in text  # escaped: Streamlit would draw the icon
    back = markdown.read(text)
    assert back.shape == (3, 2) and back["task"].tolist() == names


def test_cells_get_the_background_colour_their_text_names() -> None:
    frame = pd.DataFrame({"client": [0, 1, 2], "result": ["win", "tie", "one seed: no verdict"]})
    text = markdown_table(frame, backgrounds={"result": {"win": "green", "tie": "gray"}})
    assert ":green-background[win]" in text and ":gray-background[tie]" in text
    assert markdown.colours(text, "result") == ["green", "gray", None]
    assert markdown.read(text)["result"].tolist() == frame["result"].tolist()
