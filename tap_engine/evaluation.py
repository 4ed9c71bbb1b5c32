"""Metrics of one model on one task's held-out data (TAP_SPEC section 6).

Classification and image generation average per sample. Text generation scores the answer
only (``tap_engine.answers``): token loss and perplexity over the set's answer tokens,
token accuracy, exact match and the text metrics of ``TextScorer`` per sample.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tap_engine.answers import Tokens, position_hits, read_predictions, reference_answers
from tap_engine.data import IGNORE_INDEX, Pool
from tap_engine.models.tap_model import TapModel, TaskInfo
from tap_engine.text_metrics import TextScorer
from tap_engine.training import per_sample_loss

# Vocabulary logits are formed this many positions at a time: the head may predict 256
# positions over a 30k vocabulary, which at once would take gigabytes per batch.
LOGIT_CHUNK = 16


def length_batches(pool: Pool, batch_size: int) -> list[torch.Tensor]:
    """Row indices in batches of similar length: text rows sorted by input (then target)
    length, so that each batch, cut to its own longest row, carries little padding."""
    n = len(pool)
    length = torch.zeros(n, dtype=torch.long)
    if pool.attention_mask is not None:
        length = pool.attention_mask.sum(1).long().cpu()
    if pool.target_ids is not None:
        target = (pool.target_ids != IGNORE_INDEX).sum(1).long().cpu()
        length = length * (int(target.max()) + 1 if n else 1) + target
    order = torch.sort(length, stable=True).indices
    return list(order.split(batch_size))


@torch.no_grad()
def evaluate_task(
    model: TapModel,
    info: TaskInfo,
    pool: Pool,
    batch_size: int,
    device: torch.device,
    text_scorer: TextScorer | None = None,
) -> dict[str, float]:
    if info.family == "text_generation":
        if text_scorer is None:
            raise ValueError("text generation is evaluated with a TextScorer")
        return evaluate_text_generation(model, info, pool, batch_size, device, text_scorer)
    model.eval()
    sums: dict[str, float] = {}
    for index in length_batches(pool, batch_size):
        batch = pool.batch(index, device)
        prediction = model(info, batch).prediction.float()
        loss = per_sample_loss(info.family, prediction, batch)
        if info.family == "image_generation":
            per_sample = {"mse": loss}
        else:
            hits = (prediction.argmax(-1) == batch.labels).float()
            per_sample = {"accuracy": hits, "loss": loss}
        for name, values in per_sample.items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
    return {name: total / len(pool) for name, total in sums.items()}


@torch.no_grad()
def evaluate_text_generation(
    model: TapModel,
    info: TaskInfo,
    pool: Pool,
    batch_size: int,
    device: torch.device,
    scorer: TextScorer,
) -> dict[str, float]:
    """Answer-only metrics: the prediction is read up to the model's first end mark."""
    model.eval()
    head = model.heads[info.head_name]
    end = scorer.end_id
    loss_sum, loss_tokens = 0.0, 0
    predictions: list[Tokens] = [[] for _ in range(len(pool))]
    references: list[Tokens] = [[] for _ in range(len(pool))]
    for index in length_batches(pool, batch_size):
        batch = pool.batch(index, device)
        assert batch.target_ids is not None and batch.answer_start is not None
        feature, _ = model.features(info, batch)
        hidden = head.hidden(feature, head.max_length)  # causal: every position at once
        targets = batch.target_ids
        positions = torch.arange(targets.shape[1], device=device)
        scored = (targets != IGNORE_INDEX) & (positions >= batch.answer_start[:, None])
        predicted = torch.full(hidden.shape[:2], end, dtype=torch.long, device=device)
        for c0 in range(0, head.max_length, LOGIT_CHUNK):
            c1 = min(c0 + LOGIT_CHUNK, head.max_length)
            logits = head.lm(hidden[:, c0:c1]).float()
            predicted[:, c0:c1] = logits.argmax(-1)
            if c0 < targets.shape[1]:
                width = min(c1, targets.shape[1]) - c0
                chunk_targets = targets[:, c0 : c0 + width].masked_fill(
                    ~scored[:, c0 : c0 + width], IGNORE_INDEX
                )
                tokens = F.cross_entropy(
                    logits[:, :width].transpose(1, 2),
                    chunk_targets,
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
                loss_sum += float(tokens)
            # Past the references, once every row has ended, later positions are not read.
            if c1 >= targets.shape[1] and bool((predicted[:, :c1] == end).any(1).all()):
                break
        loss_tokens += int(scored.sum())
        # back in the set's order, so that per-example outputs line up with the set
        rows = index.tolist()
        for row, p in zip(rows, read_predictions(predicted, batch.answer_start, end), strict=True):
            predictions[row] = p
        for row, r in zip(rows, reference_answers(targets, batch.answer_start, end), strict=True):
            references[row] = r
    loss = loss_sum / max(loss_tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),  # exp of the set's mean token loss
        **answer_metrics(predictions, references, scorer),
    }


def answer_metrics(
    predictions: list[Tokens], references: list[Tokens], scorer: TextScorer
) -> dict[str, float]:
    """Per-sample means of token accuracy, exact match and the text metrics."""
    n = len(references)
    pairs = list(zip(predictions, references, strict=True))
    hits = [position_hits(p, r, scorer.end_id) for p, r in pairs]
    guesses, answers = scorer.decode(predictions), scorer.decode(references)
    metrics = {
        "token_accuracy": sum(hits) / n,
        "exact_match": sum(g == a for g, a in zip(guesses, answers, strict=True)) / n,
    }
    for name, values in scorer.score(guesses, answers).items():
        metrics[name] = sum(values) / n
    return metrics


def constant_answer_metrics(pool: Pool, answer: Tokens, scorer: TextScorer) -> dict[str, float]:
    """The metrics of answering ``answer`` to every item of ``pool``: text generation's
    chance level (there is no token loss, as a constant string has no probabilities)."""
    assert pool.target_ids is not None and pool.answer_start is not None
    references = reference_answers(pool.target_ids, pool.answer_start, scorer.end_id)
    return answer_metrics([answer] * len(references), references, scorer)
