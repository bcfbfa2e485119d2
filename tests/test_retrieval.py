"""Retrieval recall@K against hand counts, every image with all of its captions."""
import pytest
import torch

from evaluation.retrieval import feature_retrieval_recall, rank_statistics, recall_at_k, retrieval_ranks

# Three images. Image 0 has five captions (0-4) of which only caption 2 matches it well; image 1 has caption 5,
# image 2 has caption 6. Rows: images; columns: captions.
SIMILARITY = torch.tensor([
    #  c0    c1    c2    c3    c4    c5    c6
    [0.10, 0.20, 0.90, 0.00, 0.05, 0.50, 0.30],  # image 0: own best c2 (0.90) beats every other caption
    [0.60, 0.10, 0.20, 0.10, 0.10, 0.40, 0.70],  # image 1: own c5 (0.40) has c0 and c6 above it -> rank 2
    [0.20, 0.30, 0.10, 0.80, 0.10, 0.20, 0.50],  # image 2: own c6 (0.50) has c3 above it -> rank 1
])
CAPTION_IMAGE = torch.tensor([0, 0, 0, 0, 0, 1, 2])


def matrix_rows(start, stop):
    return SIMILARITY[start:stop]


def test_ranks_match_a_hand_count():
    image_ranks, caption_ranks = retrieval_ranks(matrix_rows, CAPTION_IMAGE, 3, chunk_size=2)
    assert image_ranks.tolist() == [0, 2, 1]
    # caption -> its image among 3 images: count the other images scoring at least as high in its column
    # c0: own 0.10 < 0.60, 0.20 -> 2;  c1: 0.20 < 0.30 -> 1;  c2: 0.90 -> 0;  c3: 0.00 < 0.10, 0.80 -> 2;
    # c4: 0.05 < 0.10, 0.10 -> 2;  c5: own image 1 0.40 < 0.50 -> 1;  c6: own image 2 0.50 < 0.70 -> 1
    assert caption_ranks.tolist() == [2, 1, 0, 2, 2, 1, 1]


def test_recall_at_k_from_the_hand_counted_ranks():
    recalls = recall_at_k(*retrieval_ranks(matrix_rows, CAPTION_IMAGE, 3), ks=(1, 2, 3))
    assert recalls["image_to_text_R@1"] == pytest.approx(100 / 3)  # only image 0, thanks to its one matching caption
    assert recalls["image_to_text_R@2"] == pytest.approx(200 / 3)
    assert recalls["image_to_text_R@3"] == 100.0
    assert recalls["text_to_image_R@1"] == pytest.approx(100 / 7)  # only c2
    assert recalls["text_to_image_R@2"] == pytest.approx(400 / 7)  # c1, c2, c5, c6
    assert recalls["text_to_image_R@3"] == 100.0


def test_chunk_size_does_not_change_the_ranks():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.randn(23, 60, generator=generator)
    caption_image = torch.randint(0, 23, (60,), generator=generator)
    caption_image[:23] = torch.arange(23)  # every image has a caption
    whole = retrieval_ranks(lambda a, b: similarity[a:b], caption_image, 23, chunk_size=100)
    for chunk_size in (1, 5, 22):
        chunked = retrieval_ranks(lambda a, b: similarity[a:b], caption_image, 23, chunk_size=chunk_size)
        assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


def test_ties_count_against_the_query():
    constant = torch.zeros(2, 4)
    recalls = recall_at_k(*retrieval_ranks(lambda a, b: constant[a:b], torch.tensor([0, 0, 1, 1]), 2), ks=(1, 2))
    assert recalls["image_to_text_R@1"] == 0.0 and recalls["text_to_image_R@1"] == 0.0
    assert recalls["image_to_text_R@2"] == 0.0 and recalls["text_to_image_R@2"] == 100.0


def test_features_are_compared_by_cosine_whatever_their_length():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[10.0, 1.0], [0.1, 0.0], [0.0, 3.0]])  # long but off vs short and exact: cosine decides
    recalls = feature_retrieval_recall(images, texts, torch.tensor([0, 0, 1]), ks=(1,))
    assert recalls == {"image_to_text_R@1": 100.0, "text_to_image_R@1": 100.0}


def test_nan_features_retrieve_nothing():
    images, texts = torch.full((3, 4), float("nan")), torch.randn(6, 4)
    caption_image = torch.tensor([0, 0, 1, 1, 2, 2])
    recalls = feature_retrieval_recall(images, texts, caption_image, ks=(1, 5, 10))
    assert all(value == 0.0 for value in recalls.values()), recalls


def test_a_nan_rival_counts_against_the_query():
    similarity = torch.tensor([[0.9, float("nan")], [0.1, 0.8]])
    image_ranks, caption_ranks = retrieval_ranks(lambda a, b: similarity[a:b], torch.tensor([0, 1]), 2)
    assert image_ranks.tolist() == [1, 0] and caption_ranks.tolist() == [0, 1]  # image 0 vs caption 1 is NaN


def test_a_nan_own_score_is_never_a_hit_and_ranks_last():
    similarity = torch.tensor([[float("nan"), 0.2], [0.1, 0.8]])
    image_ranks, caption_ranks = retrieval_ranks(lambda a, b: similarity[a:b], torch.tensor([0, 1]), 2)
    recalls = recall_at_k(image_ranks, caption_ranks, ks=(1, 10))
    assert recalls["image_to_text_R@10"] == 50.0 and recalls["text_to_image_R@10"] == 50.0
    assert rank_statistics(image_ranks, caption_ranks)["image_to_text_mean_rank"] == (3 + 1) / 2


def test_mean_and_median_rank_count_from_one():
    image_ranks, caption_ranks = retrieval_ranks(matrix_rows, CAPTION_IMAGE, 3)
    statistics = rank_statistics(image_ranks, caption_ranks)
    assert statistics["image_to_text_mean_rank"] == pytest.approx((1 + 3 + 2) / 3)
    assert statistics["image_to_text_median_rank"] == 2.0
    assert statistics["text_to_image_mean_rank"] == pytest.approx((3 + 2 + 1 + 3 + 3 + 2 + 2) / 7)
    assert statistics["text_to_image_median_rank"] == 2.0
