"""Text generation is scored on the answer (TAP_SPEC section 6): the template's prefix is
excluded on both sides, a prediction is read up to the model's own end mark (never cut to
the reference's length), perplexity is exp of the set's mean token loss, and the constant
answer shows what chance scores."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tap_engine import evaluation
from tap_engine.answers import (
    most_frequent_answer,
    position_hits,
    read_predictions,
    reference_answers,
)
from tap_engine.data import IGNORE_INDEX, Pool
from tap_engine.evaluation import constant_answer_metrics, evaluate_text_generation
from tap_engine.models.backbones import load_backbone
from tap_engine.text_metrics import TextScorer

END = 3


def test_a_prediction_is_read_to_its_own_end_mark_and_loses_the_prefix():
    predicted = torch.tensor(
        [
            [7, 8, 20, END, 21, 21],  # "answer : red [end] ..." -> red
            [7, END, 20, 21, 21, 21],  # ended inside the prefix -> nothing
            [7, 8, 20, 21, 22, 21],  # never ended -> everything after the prefix
        ]
    )
    answers = read_predictions(predicted, torch.tensor([2, 2, 2]), END)
    assert answers == [[20], [], [20, 21, 22, 21]]


def test_references_lose_prefix_end_mark_and_padding():
    targets = torch.tensor([[7, 8, 20, END, IGNORE_INDEX], [9, 20, 21, 22, END]])
    assert reference_answers(targets, torch.tensor([2, 1]), END) == [[20], [20, 21, 22]]


def test_token_accuracy_counts_the_end_mark_and_penalises_not_stopping():
    assert position_hits([20], [20], END) == 1.0
    assert position_hits([20, 21], [20], END) == 0.5  # the second token should have ended it
    assert position_hits([], [20], END) == 0.0


def test_the_most_frequent_answer_wins_and_a_tie_goes_to_the_first_seen():
    rows = [[7, 8, 30, END], [7, 8, 31, END], [7, 8, 31, END], [7, 8, 30, END], [7, 8, 32, END]]
    pool = Pool(
        ids=torch.arange(5), target_ids=torch.tensor(rows), answer_start=torch.full((5,), 2)
    )
    assert most_frequent_answer(pool, END) == [30]
    pool.target_ids[3, 2] = 31
    assert most_frequent_answer(pool, END) == [31]


@pytest.fixture(scope="module")
def vqa(engine):
    """The demo's VQA client (4): its task, the task's info and a scorer."""
    tokenizer = load_backbone(engine.config.backbone).tokenizer
    task = engine.clients[4].tasks[0]
    scorer = TextScorer(tokenizer, None, None)
    return task, engine.infos[task.name], scorer


def test_vqa_targets_learn_the_prefix_but_only_the_answer_is_scored(vqa):
    task, _, scorer = vqa
    pool = task.train
    assert pool.answer_start is not None and set(pool.answer_start.tolist()) == {2}
    prefix = scorer.decode([pool.target_ids[0, :2].tolist()])
    assert prefix == ["answer :"]  # "Answer:" through the uncased tokenizer
    answers = scorer.decode(reference_answers(pool.target_ids, pool.answer_start, scorer.end_id))
    import easy_vqa

    assert set(answers) <= set(easy_vqa.get_answers())


class ScriptedLM(nn.Module):
    """Stands in for the head's vocabulary projection: reads (row, position) from the fake
    hidden states and puts a large logit on the scripted token (a unit-test fake)."""

    def __init__(self, script: list[list[int]], vocab: int) -> None:
        super().__init__()
        self.script, self.vocab = torch.tensor(script), vocab

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows, positions = hidden[..., 0].long(), hidden[..., 1].long()
        return 10.0 * F.one_hot(self.script[rows, positions], self.vocab).float()


def test_evaluation_reads_each_prediction_to_its_end_mark(engine, vqa, monkeypatch):
    task, info, scorer = vqa
    pool = task.test.subset(torch.arange(3))
    head = engine.model.heads[info.head_name]
    length, vocab = head.max_length, head.lm.out_features
    references = reference_answers(pool.target_ids, pool.answer_start, scorer.end_id)
    wrong = next(t for t in range(5, vocab) if [t] != references[1])
    prefix = pool.target_ids[0, :2].tolist()
    end = scorer.end_id
    rows = [
        [*prefix, *references[0], end],  # the right answer, then stops
        [*prefix, wrong, end],  # a wrong one-token answer
    ]
    script = [(r + [end] * length)[:length] for r in rows]
    script.append(([*prefix, *references[2]] * length)[:length])  # right, but never stops
    monkeypatch.setattr(head, "lm", ScriptedLM(script, vocab))

    # Batches are length-sorted: the fake encodes each row's place in the pool, not in the
    # batch, so that the script follows the pool's rows whatever the batch order.
    batches: list[torch.Tensor] = []
    length_batches = evaluation.length_batches

    def recorded(pool, batch_size):
        batches[:] = length_batches(pool, batch_size)
        return list(batches)

    monkeypatch.setattr(evaluation, "length_batches", recorded)

    def hidden(feature, n):
        b = feature.shape[0]
        code = torch.zeros(b, n, head.positions.embedding_dim)
        code[..., 0] = batches[0][:, None]  # the three rows make one batch
        code[..., 1] = torch.arange(n)[None, :]
        return code

    monkeypatch.setattr(head, "hidden", hidden)
    metrics = evaluate_text_generation(engine.model, info, pool, 8, torch.device("cpu"), scorer)
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    read = [references[0], [wrong], script[2][2:]]
    hits = [position_hits(p, r, end) for p, r in zip(read, references, strict=True)]
    assert metrics["token_accuracy"] == pytest.approx(sum(hits) / 3)
    assert metrics["chrf"] < 100.0 and metrics["perplexity"] == pytest.approx(
        math.exp(metrics["loss"])
    )
    # The loss is the mean cross-entropy over the answer tokens (and end marks) of the set.
    batches[:] = [torch.arange(3)]  # the pool's own order
    logits = head.lm(hidden(torch.zeros(3, 1), length))
    token_losses = []
    for i, reference in enumerate(references):
        for j, token in enumerate([*reference, end]):
            token_losses.append(F.cross_entropy(logits[i, 2 + j][None], torch.tensor([token])))
    assert metrics["loss"] == pytest.approx(float(torch.stack(token_losses).mean()), rel=1e-5)


def test_the_constant_answer_scores_chance_on_the_same_data(vqa):
    task, _, scorer = vqa
    answer = most_frequent_answer(task.train, scorer.end_id)
    chance = constant_answer_metrics(task.test, answer, scorer)
    references = reference_answers(task.test.target_ids, task.test.answer_start, scorer.end_id)
    share = sum(r == answer for r in references) / len(references)
    assert chance["exact_match"] == pytest.approx(share) and 0 < share < 1
    assert "loss" not in chance and "perplexity" not in chance


def test_length_batches_sort_rows_so_batches_carry_little_padding(vqa):
    task, _, _ = vqa
    pool = task.test
    batches = evaluation.length_batches(pool, 4)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(pool)))  # every row once
    lengths = pool.attention_mask.sum(1)
    for index in batches:  # nondecreasing: each batch is padded only to its own longest row
        assert lengths[index].tolist() == sorted(lengths[index].tolist())
    widths = [int(lengths[i].max()) for i in batches]
    assert widths == sorted(widths)
