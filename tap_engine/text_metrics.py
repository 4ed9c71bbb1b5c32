"""Text generation metrics on decoded predictions: METEOR (nltk), chrF (sacrebleu) and
BERTScore F1 (bert-score). A metric that cannot run here is skipped with its reason,
never replaced by a made-up number."""

from __future__ import annotations

import logging

import torch

from tap_engine.data import IGNORE_INDEX

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


class TextScorer:
    def __init__(self, tokenizer, bertscore_model: str | None, bertscore_layers: int | None):
        self.tokenizer = tokenizer
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
            from transformers import AutoConfig

            AutoConfig.from_pretrained(model)  # fails fast when the model is not reachable
            return BERTScorer(model_type=model, num_layers=layers, lang="en")
        except Exception as exc:  # any failure to load means: no BERTScore in this run
            reason = f"cannot load BERTScore model {model!r}: {type(exc).__name__}: {exc}"
            self.skipped["bertscore_f1"] = reason.splitlines()[0][:500]
            log.warning("bertscore_f1 skipped: %s", self.skipped["bertscore_f1"])
            return None

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Token ids ``[B, T]`` -> strings, cut at the end mark (or target padding)."""
        end = self.tokenizer.sep_token_id
        texts = []
        for row in ids.tolist():
            kept = []
            for token in row:
                if token in (end, IGNORE_INDEX):
                    break
                kept.append(token)
            texts.append(self.tokenizer.decode(kept, skip_special_tokens=True).strip())
        return texts

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
