"""The zero-shot head and the accuracy metrics, against hand counts with a model whose outputs are constructed."""
import math
from types import SimpleNamespace

import pytest
import torch

from dataloader.eval.eval_datasets import Batch, UnreadableImage
from evaluation.metrics import NOT_RANKED, ClassTally, summarise, true_class_rank
from evaluation.zeroshot import classify, zero_shot_head
from utils.tokenizer import tokenize
from zeroshot_fixtures import without_padding

# Seven classes; class 6 has no images. Each row: the scores of one image, its label, then by hand: is the label
# the top-1, and is it in the top 5 (ties count against the image: fewer than k other classes may score >= it).
CASES = [
    ([5, 1, 1, 1, 1, 1, 1], 0, True, True),
    ([3, 3, 0, 0, 0, 0, 0], 0, False, True),  # tied with class 1 for first place
    ([3, 3, 0, 0, 0, 0, 0], 1, False, True),  # the same tie, seen from class 1
    ([6, 5, 4, 3, 2, 1, 0], 2, False, True),  # third
    ([0, 1, 2, 3, 4, 5, 6], 2, False, True),  # fifth
    ([1, 1, 1, 1, 1, 1, 1], 3, False, False),  # a constant output is never right
    ([0, 0, 0, 0, 9, 0, 0], 4, True, True),
    ([9, 8, 7, 6, 5, 4, 0], 5, False, False),  # sixth
    ([0, 0, 0, 0, 0, 1, 1], 5, False, True),  # tied with class 6 for first place
    ([0, 0, 0, 0, 0, 5, 6], 2, False, False),  # tied with four classes for last place
]
NAMES = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]


def case_tensors(cases):
    logits = torch.tensor([scores for scores, *_ in cases], dtype=torch.float32)
    labels = torch.tensor([label for _, label, *_ in cases])
    return logits, labels


def test_true_class_rank_counts_ties_against_the_image():
    logits, labels = case_tensors(CASES)
    assert true_class_rank(logits, labels).tolist() == [0, 1, 1, 2, 4, 6, 0, 5, 1, 6]


def check_against_hand_count(result):
    assert result.num_images == 10
    assert result.top1 == pytest.approx(100 * 2 / 10)
    assert result.top5 == pytest.approx(100 * 7 / 10)
    # per class top-1: c0 1/2, c1 0/1, c2 0/3, c3 0/1, c4 1/1, c5 0/2; c6 has no images and is left out
    assert result.mean_per_class_recall == pytest.approx((50 + 0 + 0 + 0 + 100 + 0) / 6)
    assert [(s.name, s.images) for s in result.per_class] == list(zip(NAMES, [2, 1, 3, 1, 1, 2, 0]))
    assert [s.top1 for s in result.per_class] == pytest.approx([50, 0, 0, 0, 100, 0, None])
    assert [s.top5 for s in result.per_class] == pytest.approx([100, 100, 200 / 3, 0, 100, 50, None])


def test_tally_over_two_batches_matches_the_hand_count():
    tally = ClassTally(len(NAMES))
    for chunk in (CASES[:4], CASES[4:]):
        tally.add(*case_tensors(chunk))
    check_against_hand_count(summarise(tally, NAMES))
    for scores, label, top1, top5 in CASES:  # the hand columns agree with the rule
        rank = true_class_rank(torch.tensor([scores], dtype=torch.float32), torch.tensor([label])).item()
        assert (rank < 1, rank < 5) == (top1, top5)


class ScoresAsFeatures(torch.nn.Module):
    """encode_image returns the image tensor itself (shape [N, 7, 1, 1]) as its features."""

    def encode_image(self, images):
        return images.flatten(1)


def test_classify_with_known_predictions_matches_the_hand_count():
    logits, labels = case_tensors(CASES)
    images = logits[:, :, None, None]
    batches = [
        Batch(images[:3], labels[:3], []),
        Batch(torch.empty(0), torch.empty(0, dtype=torch.long), [UnreadableImage("x.jpg", "truncated")]),
        Batch(images[3:], labels[3:], [UnreadableImage("y.jpg", "not an image")]),
    ]
    head = torch.eye(len(NAMES))  # class c's embedding is axis c: the logits are the normalised scores
    tally, unreadable = classify(ScoresAsFeatures(), batches, head, "cpu", progress=False)
    assert [image.path for image in unreadable] == ["x.jpg", "y.jpg"]
    check_against_hand_count(summarise(tally, NAMES))


class PromptLookupModel(torch.nn.Module):
    """encode_text returns a fixed, unnormalised embedding for each prompt."""

    def __init__(self, embedding_of_prompt: dict[str, list[float]]):
        super().__init__()
        self.config = SimpleNamespace(context_length=77)
        self.embedding_of_tokens = {without_padding(tokenize(prompt)[0]): torch.tensor(vector)
                                    for prompt, vector in embedding_of_prompt.items()}
        self.batch_sizes = []

    def encode_text(self, tokens):
        self.batch_sizes.append(len(tokens))
        return torch.stack([self.embedding_of_tokens[without_padding(row)] for row in tokens])


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_head_is_normalised_mean_of_normalised_template_embeddings(batch_size):
    model = PromptLookupModel({
        "x apple": [3.0, 0.0, 0.0], "y apple": [0.0, 4.0, 0.0],
        "x pear": [1.0, 1.0, 0.0], "y pear": [0.0, 0.0, 2.0],
    })
    head = zero_shot_head(model, ["apple", "pear"], ["x {}", "y {}"], "cpu", batch_size=batch_size)
    half = 1 / math.sqrt(2)
    # apple: mean([1, 0, 0], [0, 1, 0]) normalised; the mean of the raw vectors would give [0.6, 0.8, 0]
    # pear: mean([.707, .707, 0], [0, 0, 1]) = [.354, .354, .5], normalised
    expected = torch.tensor([[half, half, 0.0], [0.5, 0.5, half]]).T
    assert head.shape == (3, 2)
    assert torch.allclose(head, expected, atol=1e-6)
    assert max(model.batch_sizes) == min(batch_size, 4) and sum(model.batch_sizes) == 4


def test_nan_scores_are_misses_at_every_k():
    all_nan = torch.full((4, 3), float("nan"))
    tally = ClassTally(3)
    tally.add(all_nan, torch.tensor([0, 1, 2, 0]))
    result = summarise(tally, ["a", "b", "c"])
    assert result.top1 == 0.0 and result.top5 == 0.0  # three classes: top-5 would hold every finite rank
    assert result.num_nonfinite == 4


def test_a_nan_rival_counts_against_the_true_class_and_infinity_is_no_win():
    logits = torch.tensor([[5.0, float("nan"), 0.0],   # the true class is best among the finite scores
                           [float("inf"), 1.0, 0.0],   # an infinite true score is not a score
                           [2.0, 1.0, 0.0]])           # a clean row stays a hit
    assert true_class_rank(logits, torch.tensor([0, 0, 0])).tolist() == [1, NOT_RANKED, 0]
    tally = ClassTally(3)
    tally.add(logits, torch.tensor([0, 0, 0]))
    assert summarise(tally, ["a", "b", "c"]).num_nonfinite == 2
