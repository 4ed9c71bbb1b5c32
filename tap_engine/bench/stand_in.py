"""Stand-in data for benchmarking a hub scenario offline (``tapfl bench --stand-in-data``).

Round time depends on the shapes of the data, not its content: for every hub dataset of a
config this writes a random dataset with the same columns, splits, label range and
typical text lengths (``save_to_disk``), and returns the overrides that point the config
at them (``scenario.datasets.<name>.path``). Nothing is downloaded.
"""

from __future__ import annotations

import string
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tap_engine.config import DatasetSpec, RunConfig

# Common words (each one token for BERT-style tokenizers), so token counts look like text.
_WORD_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "what will more if no out so said up about than its into them can only other new some "
    "time could these two may first then do any like my now over such our man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used take"
)
WORDS = _WORD_TEXT.split(" ")

# Typical lengths in words of the fields the paper's datasets fill.
TEXT_WORDS = {"mmlu": 160, "vqa": 7, "commongen": 4, None: 40}
TARGET_WORDS = {"mmlu": 6, "vqa": 2, "commongen": 12, None: 12}


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, size=max(1, int(rng.normal(words, words / 4)))))


def _image(rng: np.random.Generator):
    from PIL import Image

    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def _fields(template: str | None) -> list[str]:
    if not template:
        return []
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _columns(spec: DatasetSpec, rows: int, rng: np.random.Generator) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    if spec.image_column:
        columns[spec.image_column] = [_image(rng) for _ in range(rows)]
    if spec.label_column:
        classes = spec.num_classes or 10
        labels = rng.integers(0, classes, rows) + spec.label_offset
        columns[spec.label_column] = labels.tolist()
    if spec.group_column:
        columns[spec.group_column] = list(range(rows))
    text_words, target_words = TEXT_WORDS[spec.prompt], TARGET_WORDS[spec.prompt]
    if spec.prompt == "mmlu":
        columns["subject"] = ["professional_law"] * rows
        columns["choices"] = [[_text(rng, 8) for _ in range(4)] for _ in range(rows)]
        columns[spec.target_column or "answer"] = rng.integers(0, 4, rows).tolist()
    elif spec.prompt == "commongen":
        columns[spec.text_column or "question"] = [
            [_text(rng, 1) for _ in range(4)] for _ in range(rows)
        ]
    inputs = _fields(spec.text_template) or [spec.text_column]
    targets = _fields(spec.target_template) or [spec.target_column]
    for names, words in ((inputs, text_words), (targets, target_words)):
        for name in names:  # a template's fields share the text's length
            if name and name not in columns:
                columns[name] = [_text(rng, words // len(names)) for _ in range(rows)]
    return columns


def stand_in_datasets(
    config: RunConfig, folder: Path, train_rows: int = 1200, test_rows: int = 300
) -> dict[str, str]:
    """Write stand-ins for the config's hub datasets under ``folder`` (reused when there);
    return the overrides that point the config at them."""
    import datasets

    overrides = {}
    for name, spec in sorted(config.scenario.datasets.items()):
        if spec.source != "hub" or spec.path is not None:
            continue
        target = folder / f"{name}-{train_rows}-{test_rows}"
        if not (target / "dataset_dict.json").exists():
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            splits = {spec.train_split: train_rows}
            if spec.test_split is not None:
                splits[spec.test_split] = test_rows
            else:
                splits[spec.train_split] = train_rows + test_rows
            dataset = datasets.DatasetDict(
                {
                    split: datasets.Dataset.from_dict(_columns(spec, rows, rng))
                    for split, rows in splits.items()
                }
            )
            dataset.save_to_disk(str(target))
        overrides[f"scenario.datasets.{name}.path"] = str(target)
    return overrides
