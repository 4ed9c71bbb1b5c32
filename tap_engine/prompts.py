"""The paper's prompt templates (TAP_SPEC section 7): a dataset row -> (input, prefix, answer).

The target a model learns is ``f"{prefix} {answer}"``, as in the paper's code; the prefix
("Answer:", "Correct answer on law:") is the same for every row of a template, so metrics
score the answer only.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
Prompt = tuple[str, str, str]  # model input, the target's fixed prefix, the answer


def _lettered(items: list[str]) -> str:
    letters = string.ascii_uppercase
    return " ".join(f"{letters[i]}. {item}" for i, item in enumerate(items))


def vqa(row: Row, question: str, answer: str) -> Prompt:
    return (
        f"Answer the question based on the image. Question: {row[question]}",
        "Answer:",
        str(row[answer]),
    )


def mmlu(row: Row, question: str, answer: str) -> Prompt:
    subject = str(row["subject"]).replace("_", " ")
    choices = [str(c) for c in row["choices"]]
    index = int(row[answer])
    return (
        f"The following is a multiple-choice question about {subject}. "
        f"Question: {row[question]} Options: {_lettered(choices)}",
        f"Correct answer on {subject}:",
        f"{string.ascii_uppercase[index]}. {choices[index]}",
    )


def commongen(row: Row, question: str, answer: str) -> Prompt:
    return (
        "Generate an appropriate description from the concepts below. "
        f"Concepts: {_lettered([str(c) for c in row[question]])}",
        "Description:",
        str(row[answer]),
    )


PROMPTS: dict[str, Callable[[Row, str, str], Prompt]] = {
    "vqa": vqa,
    "mmlu": mmlu,
    "commongen": commongen,
}


def template_prefix(template: str) -> str:
    """The literal text before a template's first field: ``"Answer: {a}"`` -> ``"Answer:"``."""
    literal, field, _, _ = next(iter(string.Formatter().parse(template)), ("", None, None, None))
    return literal.strip() if field is not None else ""
