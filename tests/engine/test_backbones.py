"""Backbones load through ``from_pretrained`` (hub id or folder), and both run TAP on every
task family, including text and fused image+text tasks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tap_engine.config import BackboneSpec, resolve_config
from tap_engine.events import Evaluation
from tap_engine.models.backbones import load_backbone, save_tiny_backbone
from tap_engine.runner import run


@pytest.mark.parametrize("kind", ["flava", "vilt"])
def test_a_saved_backbone_loads_through_from_pretrained_like_a_hub_id(tmp_path, kind):
    from transformers import FlavaModel, ViltModel

    folder = save_tiny_backbone(kind, tmp_path / kind, hidden=24, max_text_length=16)
    backbone = load_backbone(BackboneSpec(name=kind, path=str(folder)))
    assert isinstance(backbone.model, FlavaModel if kind == "flava" else ViltModel)
    reference = (FlavaModel if kind == "flava" else ViltModel).from_pretrained(folder)
    ours = dict(backbone.model.named_parameters())
    assert all(torch.equal(ours[k], v) for k, v in reference.named_parameters())
    assert not any(p.requires_grad for p in backbone.model.parameters())  # frozen
    ids = backbone.tokenizer("a cat sat on the mat")["input_ids"]
    assert backbone.tokenizer.decode(ids, skip_special_tokens=True) == "a cat sat on the mat"


@pytest.mark.parametrize(
    ("pretraining_size", "patch", "tokens"),
    [
        (384, 32, 1 + 7 * 7),  # dandelin/vilt-b32-mlm's sizes: the paper's 224, 49 patches
        (32, 8, 1 + 4 * 4),  # vilt-tiny: a backbone smaller than 224 keeps its own size
    ],
)
def test_vilt_images_pass_the_adaptor_to_the_backbones_image_size(
    tmp_path, pretraining_size, patch, tokens
):
    from transformers import BertTokenizerFast, ViltConfig, ViltModel

    from tap_engine.models.backbones import _tiny_vocab
    from tap_engine.models.encoders import build_encoder

    config = ViltConfig(
        hidden_size=24,
        num_attention_heads=2,
        intermediate_size=48,
        num_hidden_layers=8,
        image_size=pretraining_size,
        patch_size=patch,
        vocab_size=len(_tiny_vocab()),
    )
    ViltModel(config).save_pretrained(tmp_path / "vilt")
    vocab = {token: i for i, token in enumerate(_tiny_vocab())}
    BertTokenizerFast(vocab=vocab).save_pretrained(tmp_path / "vilt")
    backbone = load_backbone(BackboneSpec(name="vilt", path=str(tmp_path / "vilt")))
    encoder = build_encoder(backbone, "image")
    with torch.no_grad():
        encoded, mask = encoder(images=torch.randn(2, 3, 64, 64))
    assert encoded.shape == (2, tokens, 24) and mask.all()
    assert encoder.adaptor.size == min(224, pretraining_size)


def test_an_unloadable_backbone_names_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"backbone\.path"):
        load_backbone(BackboneSpec(name="flava", path=str(tmp_path / "missing")))


@pytest.fixture(scope="module")
def multimodal_dataset(tmp_path_factory):
    """A small VQA-like dataset with the columns every task family needs."""
    import datasets

    rng = np.random.default_rng(0)
    colours, shapes = ["red", "green", "blue"], ["circle", "square"]
    rows = {"image": [], "question": [], "answer": [], "label": []}
    for i in range(60):
        colour, shape = colours[i % 3], shapes[i % 2]
        image = np.zeros((32, 32, 3), dtype=np.uint8)
        image[..., i % 3] = 200 + rng.integers(0, 50)
        rows["image"].append(image)
        rows["question"].append(f"what colour is the {shape}?")
        rows["answer"].append(f"answer: {colour}")
        rows["label"].append(i % 3)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "label": datasets.Value("int64"),
        }
    )
    encoded = {**rows, "image": [datasets.Image().encode_example(a) for a in rows["image"]]}
    path = tmp_path_factory.mktemp("data") / "shapes"
    datasets.Dataset.from_dict(encoded, features=features).save_to_disk(path)
    return str(path)


def _scenario(path: str, image_classification: bool) -> dict:
    dataset = {
        "source": "disk",
        "name": path,
        "image_column": "image",
        "text_column": "question",
        "target_column": "answer",
        "label_column": "label",
        "num_classes": 3,
        "test_fraction": 0.25,
    }

    def task(name, family, shard, **extra):
        return {
            "task": name,
            "family": family,
            "dataset": "shapes",
            "shards": [[shard, 4]],
            **extra,
        }

    return {
        "datasets": {"shapes": dataset},
        "clients": [
            {
                "tasks": [
                    task("colour_text_classification", "text_classification", 0, domain="news")
                ]
            },
            {
                "tasks": [
                    task(
                        "vqa",
                        "text_generation",
                        1,
                        modalities=["image", "text"],
                        domain="visual_answering",
                    )
                ]
            },
            {
                "tasks": [
                    # ViLT serves no image classification (as in the paper): text generation there
                    task("colour_image_classification", "image_classification", 2)
                    if image_classification
                    else task("colour_text_generation", "text_generation", 2),
                    task("caption", "text_generation", 2, domain="common_sense_answering"),
                ]
            },
            {"tasks": [task("shape_image_generation", "image_generation", 3)]},
        ],
    }


@pytest.mark.parametrize("backbone", ["flava-tiny", "vilt-tiny"])
def test_tap_serves_every_task_family_on_both_backbones(tmp_path, multimodal_dataset, backbone):
    overrides = {
        "backbone.name": backbone,
        "backbone.max_text_length": 24,
        "scenario": _scenario(multimodal_dataset, backbone == "flava-tiny"),
        "clients_per_round": 2,
        "rounds": 2,
        "local_steps": 2,
        "batch_size": 6,
        "post_iterations": 1,
        "eval_every": 1,
        "bertscore_model": None,
    }
    config = resolve_config("demo", "tap", overrides)
    assert config.margins["image_classification"] == (0.01 if backbone == "flava-tiny" else 0.02)
    events = []
    assert run(config, events.append, tmp_path / "run").status == "succeeded"
    metrics = {
        (e.task, e.metric) for e in events if isinstance(e, Evaluation) and e.stage == "post"
    }
    assert {
        ("vqa", "perplexity"),
        ("caption", "token_accuracy"),
        ("shape_image_generation", "mse"),
    } <= metrics
    assert ("colour_text_classification", "accuracy") in metrics
    if backbone == "flava-tiny":
        assert ("colour_image_classification", "accuracy") in metrics
    assert ("vqa", "chrf") in metrics  # text metrics on decoded predictions


def tapfl(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tap_engine.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


QUICK = [
    "--set",
    "local_steps=2",
    "--set",
    "batch_size=8",
    "--set",
    "post_iterations=2",
    "--set",
    "eval_max_samples=16",
]


@pytest.mark.parametrize(
    "algorithm",
    [
        "tap",
        "tap_no_kd",
        "fedavg",
        "fedavg_ft",
        "fedavg_ft2x",
        "disentafl",
        "disentafl_ft",
        "local",
    ],
)
def test_every_algorithm_runs_the_demo_from_the_command_line(tmp_path, algorithm):
    out = tmp_path / algorithm
    proc = tapfl(
        "run", "--algorithm", algorithm, "--set", "rounds=3", *QUICK, "--quiet", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    config = json.loads((out / "config.json").read_text())
    evals = [e for e in events if e["type"] == "evaluation"]
    assert {e["client"] for e in evals} == set(range(len(config["scenario"]["clients"])))
    finals = {e["client"] for e in evals if e["stage"] == "post" and e["model"] == "final"}
    assert finals == set(range(len(config["scenario"]["clients"])))
    replacements = [e for e in events if e["type"] == "replacement"]
    assert bool(replacements) == algorithm.startswith("tap")
