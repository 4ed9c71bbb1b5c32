"""Datasets that ship inside installed packages, as ``datasets.Dataset`` splits, so that
they go through the same encoding path as hub and disk datasets.

- ``sklearn_digits``: scikit-learn's 1,797 handwritten digits (8x8, 10 classes); one split.
- ``easy_vqa``: the ``easy-vqa`` package's 64x64 shape images with questions and answers
  (4,000 train and 1,000 test images; their own splits, so test images never appear in
  training). Up to two questions per image. Columns: image, question, answer,
  answer_label (13 answers), question_type (0 shape, 1 colour, 2 yes/no).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from tap_engine.errors import DataError

QUESTIONS_PER_IMAGE = 2
SHAPES = {"circle", "rectangle", "triangle"}


class UnknownBuiltin(ValueError):
    pass


def _digits(split: str):
    import datasets
    from sklearn.datasets import load_digits

    digits = load_digits()
    return datasets.Dataset.from_dict(
        {"image": list(digits.images / 16.0), "label": digits.target.tolist()}
    )


def _question_type(answer: str) -> int:
    if answer in SHAPES:
        return 0
    return 2 if answer in {"yes", "no"} else 1


@cache
def _easy_vqa(split: str):
    import datasets
    import easy_vqa

    if split not in {"train", "test"}:
        raise UnknownBuiltin(f"easy_vqa has splits train and test, not {split!r}")
    questions, answers, image_ids = (
        easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    )
    paths = (
        easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    )
    vocabulary = easy_vqa.get_answers()
    rows: dict[str, list] = {
        k: [] for k in ("image", "question", "answer", "answer_label", "question_type", "image_id")
    }
    taken: dict[int, int] = {}
    for question, answer, image_id in zip(questions, answers, image_ids, strict=True):
        if taken.get(image_id, 0) >= QUESTIONS_PER_IMAGE:
            continue
        taken[image_id] = taken.get(image_id, 0) + 1
        rows["image"].append(paths[image_id])
        rows["question"].append(question)
        rows["answer"].append(answer)
        rows["answer_label"].append(vocabulary.index(answer))
        rows["question_type"].append(_question_type(answer))
        rows["image_id"].append(image_id)
    return datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())


BUILTIN: dict[str, Callable[[str], object]] = {"sklearn_digits": _digits, "easy_vqa": _easy_vqa}


def load(name: str, split: str):
    if name not in BUILTIN:
        raise DataError(f"unknown builtin dataset {name!r} (known: {', '.join(sorted(BUILTIN))})")
    try:
        return BUILTIN[name](split)
    except UnknownBuiltin as exc:
        raise DataError(str(exc)) from exc
