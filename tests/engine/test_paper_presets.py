"""The paper's presets run end to end on small local stand-ins with the hub schemas, loaded
through ``datasets.load_dataset`` exactly as hub ids are (a folder laid out like a hub
repository: parquet files per split and a README that names the configurations). The
presets keep their hub ids; ``load_dataset`` is pointed from each id to its stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tap_engine.config import resolve_config
from tap_engine.data import build_clients, pooled_test
from tap_engine.events import Evaluation
from tap_engine.models.backbones import load_backbone
from tap_engine.models.tap_model import TapModel
from tap_engine.runner import client_components, run, task_infos

RNG = np.random.default_rng(0)


def _image(size: int, channels: int = 3) -> np.ndarray:
    shape = (size, size, channels) if channels > 1 else (size, size)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _rows(kind: str, n: int) -> dict:
    words = ["dog", "cat", "ball", "tree", "run", "jump"]
    if kind == "tiny_imagenet":
        return {"image": [_image(64) for _ in range(n)], "label": [i % 200 for i in range(n)]}
    if kind == "ag_news":
        return {
            "label": [1 + i % 4 for i in range(n)],
            "title": [f"title {i}" for i in range(n)],
            "description": [f"news text number {i}" for i in range(n)],
        }
    if kind == "caltech256":
        return {"image": [_image(48) for _ in range(n)], "label": [i % 257 for i in range(n)]}
    if kind == "vqav2":
        return {
            "multiple_choice_answer": [words[i % 6] for i in range(n)],
            "question": [f"what is in picture {i}?" for i in range(n)],
            "image": [_image(40) for _ in range(n)],
        }
    if kind == "mmlu":
        return {
            "question": [f"question {i}?" for i in range(n)],
            "subject": ["professional_law"] * n,
            "choices": [[f"choice {j}" for j in range(4)] for _ in range(n)],
            "answer": [i % 4 for i in range(n)],
        }
    if kind == "cifar100":
        return {
            "img": [_image(32) for _ in range(n)],
            "fine_label": [i % 100 for i in range(n)],
            "coarse_label": [i % 20 for i in range(n)],
        }
    if kind == "common_gen":
        return {
            "concept_set_idx": list(range(n)),
            "concepts": [words[i % 4 : i % 4 + 3] for i in range(n)],
            "target": [f"a {words[i % 6]} plays" for i in range(n)],
        }
    if kind == "fashion_mnist":
        return {"image": [_image(28, 1) for _ in range(n)], "label": [i % 10 for i in range(n)]}
    raise KeyError(kind)


IMAGE_COLUMNS = {
    "tiny_imagenet": "image",
    "caltech256": "image",
    "vqav2": "image",
    "cifar100": "img",
    "fashion_mnist": "image",
}


def _hub_like_repo(root: Path, kind: str, splits: dict[str, int], configs: list[str] | None) -> str:
    """A folder ``load_dataset`` reads like a hub repository."""
    import datasets

    root.mkdir(parents=True)
    names = configs or ["default"]
    lines = ["---", "configs:"]
    for config in names:
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, n in splits.items():
            rows = _rows(kind, n)
            features = None
            if kind in IMAGE_COLUMNS:
                column = IMAGE_COLUMNS[kind]
                rows[column] = [datasets.Image().encode_example(a) for a in rows[column]]
                inferred = datasets.Dataset.from_dict(
                    {k: v for k, v in rows.items() if k != column}
                ).features
                features = datasets.Features({**inferred, column: datasets.Image()})
            folder = root / config
            folder.mkdir(exist_ok=True)
            datasets.Dataset.from_dict(rows, features=features).to_parquet(
                folder / f"{split}.parquet"
            )
            lines += [f"  - split: {split}", f"    path: {config}/{split}.parquet"]
    lines.append("---")
    (root / "README.md").write_text("\n".join(lines) + "\n")
    return str(root)


SPLITS = {
    "tiny_imagenet": {"train": 36, "valid": 18},
    "ag_news": {"train": 72, "test": 36},
    "caltech256": {"train": 36, "test": 18},
    "vqav2": {"validation": 90},
    "mmlu": {"test": 60, "validation": 30},
    "cifar100": {"train": 36, "test": 18},
    "common_gen": {"train": 36, "validation": 18},
    "fashion_mnist": {"train": 54, "test": 27},
}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Stand-in folders by the presets' dataset keys; while the module runs, each preset's
    hub id loads its stand-in."""
    import datasets

    folders = _stand_in_folders(tmp_path_factory)
    by_hub_id = {
        spec.name: folders[key]
        for preset in ("paper-flava", "paper-vilt")
        for key, spec in resolve_config(preset).scenario.datasets.items()
    }
    load = datasets.load_dataset

    def load_stand_in(path: str, *args: Any, **kwargs: Any) -> Any:
        return load(by_hub_id.get(path, path), *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets, "load_dataset", load_stand_in)
        yield folders


def _stand_in_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hub")
    mmlu = _hub_like_repo(
        root / "mmlu",
        "mmlu",
        SPLITS["mmlu"],
        ["professional_law", "professional_medicine", "moral_scenarios"],
    )
    repos = {
        kind: _hub_like_repo(root / kind, kind, SPLITS[kind], None)
        for kind in SPLITS
        if kind != "mmlu"
    }
    return {**repos, "mmlu_law": mmlu, "mmlu_medicine": mmlu, "mmlu_moral": mmlu}


def _overrides(preset: str, stand_ins: dict[str, str]) -> dict:
    config = resolve_config(preset)
    return {
        "backbone.name": f"{config.backbone.kind}-tiny",
        "backbone.max_text_length": 32,
        "backbone.max_target_length": 12,
        "scenario.max_train": 4,
        "scenario.max_test": 2,
        "rounds": 1,
        "local_steps": 1,
        "post_iterations": 1,
        "batch_size": 4,
        "grad_accum": 1,
        "eval_max_samples": 2,
        "bertscore_model": None,
    }


# TAP on FLAVA; the cheaper FedAvg on ViLT, whose blocks are four layers deep.
@pytest.mark.parametrize(
    ("preset", "algorithm"), [("paper-flava", "tap"), ("paper-vilt", "fedavg")]
)
def test_paper_preset_runs_end_to_end_on_local_stand_ins(tmp_path, stand_ins, preset, algorithm):
    config = resolve_config(preset, algorithm, _overrides(preset, stand_ins))
    assert len(config.scenario.clients) == 30
    events = []
    assert run(config, events.append, tmp_path / "run").status == "succeeded"
    evaluated = {e.client for e in events if isinstance(e, Evaluation) and e.stage == "post"}
    assert evaluated == set(range(30))
    text = {
        e.metric for e in events if isinstance(e, Evaluation) and e.task == "mmlu_text_generation"
    }
    assert {"perplexity", "chrf"} <= text and ("meteor" in text or "meteor_exact_stem" in text)


@pytest.mark.parametrize("preset", ["paper-flava", "paper-vilt"])
def test_paper_presets_share_the_generation_heads_and_pool_per_dataset(stand_ins, preset):
    """As in the paper's code: one text-generation head for VQA, MMLU and CommonGen, one
    image-generation head for Caltech-256 and Fashion-MNIST; generalization stays per
    dataset."""
    config = resolve_config(preset, "tap", _overrides(preset, stand_ins))
    backbone = load_backbone(config.backbone)
    clients = build_clients(config, backbone.tokenizer)
    infos = task_infos(clients)
    model = TapModel(backbone, list(infos.values()), config.backbone.max_target_length)
    classifiers = {"ag_news_text_classification"}
    if preset == "paper-flava":
        classifiers |= {"tiny_imagenet_image_classification", "cifar100_image_classification"}
    assert set(model.heads) == classifiers | {"text_generation", "image_generation"}
    text_tasks = {"vqav2_text_generation", "mmlu_text_generation", "common_gen_text_generation"}
    image_tasks = {"caltech256_image_generation", "fashion_mnist_image_generation"}
    assert {infos[t].head_name for t in text_tasks} == {"text_generation"}
    assert {infos[t].head_name for t in image_tasks} == {"image_generation"}
    # The VQA, MMLU and CommonGen clients all hold (and so average) the one head.
    holders = {
        c
        for c, client in enumerate(clients)
        if "heads.text_generation" in client_components(model, client, infos)
    }
    assert holders == {c for g in (0, 10, 20) for c in (g + 4, g + 5, g + 6, g + 8, g + 9)}
    assert text_tasks | image_tasks <= set(pooled_test(clients))


def test_mmlu_trains_on_test_and_is_evaluated_on_validation(stand_ins):
    config = resolve_config("paper-flava", "tap", _overrides("paper-flava", stand_ins))
    spec = config.scenario.datasets["mmlu_law"]
    assert (spec.train_split, spec.test_split) == ("test", "validation")
    tokenizer = load_backbone(config.backbone).tokenizer
    mmlu = build_clients(config, tokenizer)[6].tasks[0]
    # Items of a separate test split are numbered after the train split's rows.
    assert int(mmlu.train.ids.max()) < SPLITS["mmlu"]["test"] <= int(mmlu.test.ids.min())


def test_mmlu_client_holds_three_domains_and_ag_news_labels_start_at_zero(stand_ins):
    config = resolve_config("paper-flava", "tap", _overrides("paper-flava", stand_ins))
    tokenizer = load_backbone(config.backbone).tokenizer
    clients = build_clients(config, tokenizer)
    mmlu = clients[6].tasks[0]
    assert mmlu.spec.domains == ["law_answering", "medicine_answering", "moral_answering"]
    assert (
        set(mmlu.train.domains.tolist()) == {0, 1, 2} or len(set(mmlu.train.domains.tolist())) == 3
    )
    ag_news = clients[1].tasks[0]
    assert int(ag_news.train.labels.min()) >= 0 and int(ag_news.train.labels.max()) <= 3
    prompt = tokenizer.decode(mmlu.train.input_ids[0], skip_special_tokens=True)
    assert (
        "multiple - choice question about professional law" in prompt
        or "professional law" in prompt
    )


def test_one_override_redirects_a_hub_dataset_to_a_local_copy(tmp_path, stand_ins):
    import datasets

    copy = tmp_path / "cifar_copy"
    datasets.load_dataset(stand_ins["cifar100"]).save_to_disk(copy)
    overrides = {
        **_overrides("paper-flava", stand_ins),
        "scenario.datasets.cifar100.name": "uoft-cs/cifar100",
        "scenario.datasets.cifar100.path": str(copy),
    }
    config = resolve_config("paper-flava", "tap", overrides)
    tokenizer = load_backbone(config.backbone).tokenizer
    clients = build_clients(config, tokenizer)
    assert clients[7].tasks[0].name == "cifar100_image_classification"
    assert len(clients[7].tasks[0].train) > 0
    json.dumps(config.model_dump(mode="json"))  # the resolved config stays serialisable
