"""Text metrics: computed from decoded text, and BERTScore skipped with a reason when its
model cannot be loaded, never faked."""

from __future__ import annotations

import pytest
from transformers import BertConfig, BertModel

from tap_engine.config import BackboneSpec
from tap_engine.models.backbones import load_backbone
from tap_engine.text_metrics import TextScorer


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone(BackboneSpec(name="flava-tiny")).tokenizer


def test_meteor_and_chrf_reward_the_right_answer(tokenizer):
    scorer = TextScorer(tokenizer, None, None)
    scores = scorer.score(["red", "blue"], ["red", "red"])
    meteor = scores[scorer.meteor_name]
    assert meteor[0] > meteor[1] and scores["chrf"][0] == pytest.approx(100.0)
    assert scorer.skipped == {"bertscore_f1": "disabled: bertscore_model is not set"}


def test_bertscore_with_a_local_model_and_its_skip_reason_without_one(tokenizer, tmp_path):
    folder = tmp_path / "tiny-bert"
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).save_pretrained(folder)
    saved = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, model_max_length=128)
    saved.save_pretrained(folder)  # bert-score truncates to the model's declared maximum
    scorer = TextScorer(tokenizer, str(folder), 2)
    assert "bertscore_f1" not in scorer.skipped
    f1 = scorer.score(["a red circle"], ["a red circle"])["bertscore_f1"]
    assert f1[0] == pytest.approx(1.0, abs=1e-4)

    missing = TextScorer(tokenizer, str(tmp_path / "no-such-model"), 2)
    assert "bertscore_f1" in missing.skipped and "no-such-model" in missing.skipped["bertscore_f1"]
    assert "bertscore_f1" not in missing.score(["a"], ["a"])


def test_bertscore_defaults_to_the_papers_model():
    from tap_engine.config import RunConfig

    assert RunConfig.model_fields["bertscore_model"].default == "bert-base-uncased"


def test_an_unreachable_hub_skips_bertscore_after_one_probe(tokenizer, monkeypatch, fresh_hub):
    """Offline, the hub is asked once (one connection), never retried: the metric is
    skipped with a reason that says why."""
    import socket

    with socket.socket() as closed:  # a local port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    connects = []
    real_connect = socket.create_connection

    def counting(*args, **kwargs):
        connects.append(args[0])
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    # A name no cache holds, so that only the hub could provide it.
    first = TextScorer(tokenizer, "tapfl-tests/no-such-bert", None)
    second = TextScorer(tokenizer, "tapfl-tests/no-such-bert-either", None)
    for scorer in (first, second):
        reason = scorer.skipped["bertscore_f1"]
        assert "cannot be reached" in reason and "127.0.0.1" in reason
    assert connects == [("127.0.0.1", port)]  # the second run of the check is remembered
