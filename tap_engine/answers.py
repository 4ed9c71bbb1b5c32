"""Answers of text generation, as metrics read them (TAP_SPEC section 6).

A target is the template's fixed prefix, the answer, then the end mark; the model learns all
of it, but only the answer is scored. A prediction is the per-position argmax read up to the
model's own first end mark (or the head's last position), never cut to the reference's
length; the prefix's positions are then dropped from both sides. Chance is the client's most
frequent training answer, given for every item.
"""

from __future__ import annotations

from collections import Counter

import torch

from tap_engine.data import IGNORE_INDEX, Pool

Tokens = list[int]


def reference_answers(targets: torch.Tensor, answer_start: torch.Tensor, end: int) -> list[Tokens]:
    """Per row of ``targets`` ``[B, T]``: the answer's tokens, without prefix or end mark."""
    answers = []
    for row, start in zip(targets.tolist(), answer_start.tolist(), strict=True):
        tokens = [t for t in row if t != IGNORE_INDEX]
        stop = tokens.index(end) if end in tokens else len(tokens)
        answers.append(tokens[start:stop])
    return answers


def read_predictions(predicted: torch.Tensor, answer_start: torch.Tensor, end: int) -> list[Tokens]:
    """Per row of the argmax ``[B, T]``: the tokens before its first end mark, less the
    prefix's positions (an end mark inside the prefix leaves an empty answer)."""
    answers = []
    for row, start in zip(predicted.tolist(), answer_start.tolist(), strict=True):
        stop = row.index(end) if end in row else len(row)
        answers.append(row[start:stop])
    return answers


def most_frequent_answer(pool: Pool, end: int) -> Tokens:
    """The most frequent answer among ``pool``'s targets (the first seen wins a tie)."""
    assert pool.target_ids is not None and pool.answer_start is not None
    counts = Counter(map(tuple, reference_answers(pool.target_ids, pool.answer_start, end)))
    return list(counts.most_common(1)[0][0]) if counts else []


def position_hits(answer: Tokens, reference: Tokens, end: int) -> float:
    """Token accuracy of one answer: position by position over the reference's answer and
    its end mark."""
    expected = [*reference, end]
    given = [*answer, end]
    return sum(a == b for a, b in zip(given, expected, strict=False)) / len(expected)
