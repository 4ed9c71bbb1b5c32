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


# Scored pairs kept for reuse; beyond this many the memo starts again.
MEMO_LIMIT = 100_000


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


class _StemMemo:
    """nltk's Porter stemmer, each word stemmed once per run: METEOR stems every word of
    both sentences on every call, and a set's answers repeat the same few words."""

    def __init__(self) -> None:
        from nltk.stem.porter import PorterStemmer

        self._porter = PorterStemmer()
        self._stems: dict[str, str] = {}

    def stem(self, word: str) -> str:
        stem = self._stems.get(word)
        if stem is None:
            stem = self._stems[word] = self._porter.stem(word)
        return stem


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
        self._stemmer = _StemMemo()
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF()  # sacrebleu.sentence_chrf's defaults, built once
        # METEOR and chrF are functions of (prediction, reference) alone: a pair seen before
        # (a constant answer, "yes" against "yes") is not scored again.
        self._pairs: dict[tuple[str, str], tuple[float, float]] = {}
        self._decoded: dict[tuple[int, ...], str] = {}
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
        """Answer token ids -> strings (each distinct answer decoded once per run)."""
        out = []
        for answer in answers:
            key = tuple(answer)
            text = self._decoded.get(key)
            if text is None:
                if len(self._decoded) >= MEMO_LIMIT:
                    self._decoded.clear()
                text = self.tokenizer.decode(answer, skip_special_tokens=True).strip()
                self._decoded[key] = text
            out.append(text)
        return out

    def _meteor_chrf(self, prediction: str, reference: str) -> tuple[float, float]:
        from nltk.translate.meteor_score import meteor_score

        key = (prediction, reference)
        if key not in self._pairs:
            if len(self._pairs) >= MEMO_LIMIT:  # a long run's answers: bounded memory
                self._pairs.clear()
            words = prediction.split()
            meteor = meteor_score(
                [reference.split()], words, stemmer=self._stemmer, wordnet=self._wordnet
            )
            chrf = self._chrf.sentence_score(prediction, [reference]).score
            self._pairs[key] = (meteor, chrf)
        return self._pairs[key]

    def score(self, predictions: list[str], references: list[str]) -> dict[str, list[float]]:
        """Per-sample values of every metric that can run: METEOR and chrF per distinct
        pair, BERTScore in one call for the set."""
        pairs = [self._meteor_chrf(p, r) for p, r in zip(predictions, references, strict=True)]
        scores = {self.meteor_name: [m for m, _ in pairs], "chrf": [c for _, c in pairs]}
        if self._bertscore is not None:
            _, _, f1 = self._bertscore.score(predictions, references)
            scores["bertscore_f1"] = f1.tolist()
        return scores
