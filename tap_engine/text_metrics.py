"""Text generation metrics on decoded answers: METEOR (nltk), chrF (sacrebleu) and
BERTScore F1 (bert-score, the paper code's ``bert-base-uncased`` by default). A metric that
cannot run here is skipped with its reason, never replaced by a made-up number.

BERTScore's model comes from a local folder, the Hugging Face cache, or the hub; when the
hub is needed and cannot be reached, the metric is skipped at once after one short check,
rather than after the hub client's retries.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tap_engine import hub
from tap_engine.data import end_token_id

log = logging.getLogger(__name__)


class _NoWordNet:
    """Stands in for WordNet when its corpus is not installed: no synonym matches, so
    METEOR matches exact words and stems only (reported as ``meteor_exact_stem``)."""

    def synsets(self, *args, **kwargs) -> list:
        return []


def _wordnet():
    from nltk.corpus import wordnet

    try:
        wordnet.synsets("test")
    except LookupError:
        return None
    return wordnet


class BertScoreUnavailable(RuntimeError):
    pass


def locate_bertscore_model(model: str) -> str:
    """A local folder holding ``model``: itself, its Hugging Face cache snapshot, or a
    fresh download when the hub can be reached."""
    if Path(model).is_dir():
        return model
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, local_files_only=True)
    except Exception:  # not in the cache (the hub client raises several types)
        pass
    if not hub.settle():
        raise BertScoreUnavailable(
            f"{model!r} is neither a folder nor in the Hugging Face cache, and the hub "
            f"({hub.endpoint()}) cannot be reached"
        )
    return snapshot_download(model)


class TextScorer:
    def __init__(self, tokenizer, bertscore_model: str | None, bertscore_layers: int | None):
        self.tokenizer = tokenizer
        self.end_id = end_token_id(tokenizer)
        self.skipped: dict[str, str] = {}
        wordnet = _wordnet()
        self.meteor_name = "meteor" if wordnet is not None else "meteor_exact_stem"
        self._wordnet = wordnet or _NoWordNet()
        self._bertscore = None
        if bertscore_model is None:
            self.skipped["bertscore_f1"] = "disabled: bertscore_model is not set"
        else:
            self._bertscore = self._load_bertscore(bertscore_model, bertscore_layers)

    def _load_bertscore(self, model: str, layers: int | None):
        try:
            from bert_score import BERTScorer
            from bert_score.utils import model2layers

            folder = locate_bertscore_model(model)
            layers = layers or model2layers.get(model)
            if layers is None:
                raise BertScoreUnavailable(
                    f"bert-score has no default layer for {model!r}: set bertscore_num_layers"
                )
            return BERTScorer(model_type=folder, num_layers=layers, lang="en")
        except Exception as exc:  # any failure to load means: no BERTScore in this run
            reason = f"cannot load BERTScore model {model!r}: {type(exc).__name__}: {exc}"
            self.skipped["bertscore_f1"] = reason.splitlines()[0][:500]
            log.warning("bertscore_f1 skipped: %s", self.skipped["bertscore_f1"])
            return None

    def decode(self, answers: list[list[int]]) -> list[str]:
        """Answer token ids -> strings."""
        return [self.tokenizer.decode(a, skip_special_tokens=True).strip() for a in answers]

    def score(self, predictions: list[str], references: list[str]) -> dict[str, list[float]]:
        """Per-sample values of every metric that can run."""
        from nltk.translate.meteor_score import meteor_score
        from sacrebleu import sentence_chrf

        scores = {
            self.meteor_name: [
                meteor_score([r.split()], p.split(), wordnet=self._wordnet)
                for p, r in zip(predictions, references, strict=True)
            ],
            "chrf": [
                sentence_chrf(p, [r]).score for p, r in zip(predictions, references, strict=True)
            ],
        }
        if self._bertscore is not None:
            _, _, f1 = self._bertscore.score(predictions, references)
            scores["bertscore_f1"] = f1.tolist()
        return scores
