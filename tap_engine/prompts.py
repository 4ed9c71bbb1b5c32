"""The paper's prompt templates (TAP_SPEC section 7): a dataset row -> (input, target)."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]


def _lettered(items: list[str]) -> str:
    letters = string.ascii_uppercase
    return " ".join(f"{letters[i]}. {item}" for i, item in enumerate(items))


def vqa(row: Row, question: str, answer: str) -> tuple[str, str]:
    return (
        f"Answer the question based on the image. Question: {row[question]}",
        f"Answer: {row[answer]}",
    )


def mmlu(row: Row, question: str, answer: str) -> tuple[str, str]:
    subject = str(row["subject"]).replace("_", " ")
    choices = [str(c) for c in row["choices"]]
    index = int(row[answer])
    return (
        f"The following is a multiple-choice question about {subject}. "
        f"Question: {row[question]} Options: {_lettered(choices)}",
        f"Correct answer on {subject}: {string.ascii_uppercase[index]}. {choices[index]}",
    )


def commongen(row: Row, question: str, answer: str) -> tuple[str, str]:
    return (
        "Generate an appropriate description from the concepts below. "
        f"Concepts: {_lettered([str(c) for c in row[question]])}",
        f"Description: {row[answer]}",
    )


PROMPTS: dict[str, Callable[[Row, str, str], tuple[str, str]]] = {
    "vqa": vqa,
    "mmlu": mmlu,
    "commongen": commongen,
}
