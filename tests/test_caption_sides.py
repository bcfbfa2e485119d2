"""Captions against flipped images: left and right exchanged as whole words in the case they were written in, and
the no_flip policy keeping a caption that names a side with its unflipped image."""
import pytest

from dataloader.train.caption_sides import flip_with_captions, names_a_side, swap_sides


@pytest.mark.parametrize("caption, swapped", [
    ("a dog on the left of a man", "a dog on the right of a man"),
    ("Left: a cup. RIGHT: a plate", "Right: a cup. LEFT: a plate"),
    ("his left-hand glove, the rightmost chair", "his right-hand glove, the leftmost chair"),
    ("left and right", "right and left"),
    ("leftover rights, a leftist copyright", "leftover rights, a leftist copyright"),  # other words
])
def test_swap_sides_exchanges_whole_words_keeping_their_case(caption, swapped):
    assert swap_sides(caption) == swapped
    assert names_a_side(caption) == (caption != swapped)


def test_swap_keeps_unflipped_captions_and_swaps_flipped_ones():
    assert flip_with_captions(["a dog on the left"], False, "swap") == (False, ["a dog on the left"])
    assert flip_with_captions(["a dog on the left"], True, "swap") == (True, ["a dog on the right"])
    assert flip_with_captions(["a dog"], True, "swap") == (True, ["a dog"])
    assert flip_with_captions(["a dog", "a cat to the Right"], True, "swap") == (True, ["a dog", "a cat to the Left"])


def test_no_flip_never_flips_an_image_one_of_whose_captions_names_a_side():
    assert flip_with_captions(["a dog on the Right"], True, "no_flip") == (False, ["a dog on the Right"])
    assert flip_with_captions(["a dog"], True, "no_flip") == (True, ["a dog"])
    assert flip_with_captions(["a dog"], False, "no_flip") == (False, ["a dog"])
    either_names_a_side = ["a dog", "a dog, left paw up"]
    assert flip_with_captions(either_names_a_side, True, "no_flip") == (False, either_names_a_side)
