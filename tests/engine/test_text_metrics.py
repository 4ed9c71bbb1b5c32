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


def test_each_distinct_pair_is_scored_once_and_equals_the_libraries_own_scores(tokenizer):
    """METEOR (nltk, Porter stems) and chrF (sacrebleu's sentence chrF) per sample, as the
    libraries compute them one call per sample, but a pair seen before is not rescored."""
    from nltk.translate.meteor_score import meteor_score
    from sacrebleu import sentence_chrf

    scorer = TextScorer(tokenizer, None, None)
    predictions = ["the dogs are running", "a red circle", "yes", "the dogs are running"]
    references = ["dogs run in the park", "a red square", "no", "dogs run in the park"]
    wordnet = scorer._wordnet
    calls = []
    real = scorer._chrf.sentence_score
    scorer._chrf.sentence_score = lambda *a: calls.append(a) or real(*a)
    scores = scorer.score(predictions, references)
    assert scores[scorer.meteor_name] == [
        meteor_score([r.split()], p.split(), wordnet=wordnet)
        for p, r in zip(predictions, references, strict=True)
    ]
    assert scores["chrf"] == [
        sentence_chrf(p, [r]).score for p, r in zip(predictions, references, strict=True)
    ]
    assert len(calls) == 3  # the repeated pair came from the memo
    scorer.score(predictions[:1], references[:1])
    assert len(calls) == 3


def test_answers_are_decoded_as_the_tokenizer_decodes_them(tokenizer):
    scorer = TextScorer(tokenizer, None, None)
    answers = [tokenizer.encode("a red circle", add_special_tokens=False), []]
    expected = [tokenizer.decode(a, skip_special_tokens=True).strip() for a in answers]
    assert scorer.decode(answers) == expected
    assert scorer.decode(answers[:1]) == expected[:1]  # from the memo, the same string
