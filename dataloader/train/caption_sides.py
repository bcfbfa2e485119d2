"""Captions that name a side against horizontally flipped training images: a mirrored image shows its left on the
right, so a flipped sample's caption either has left and right exchanged ("swap") or a caption naming a side keeps
its image unflipped ("no_flip"; data.sided_captions)."""
import re

# left/right as whole words in any case (Left, left-hand, leftmost); leftover or rights are other words
SIDE = re.compile(r"\b(left|right)(?=(?:most)?\b)", re.IGNORECASE)
OTHER_SIDE = {"left": "right", "right": "left"}


def names_a_side(caption: str) -> bool:
    return SIDE.search(caption) is not None


def swap_sides(caption: str) -> str:
    """`caption` with left and right exchanged, each written in the case of the word it replaces."""
    return SIDE.sub(_other_side, caption)


def _other_side(match: re.Match) -> str:
    word = match.group(0)
    other = OTHER_SIDE[word.lower()]
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def flip_with_captions(captions: list[str], flip_drawn: bool, sided_captions: str) -> tuple[bool, list[str]]:
    """(whether the image is mirrored, the captions that describe it then) for a sample whose flip was drawn as
    `flip_drawn`: "swap" mirrors it and exchanges the sides its captions name; "no_flip" keeps an image one of
    whose captions names a side as it is."""
    if not flip_drawn:
        return False, captions
    if sided_captions == "swap":
        return True, [swap_sides(caption) for caption in captions]
    return not any(names_a_side(caption) for caption in captions), captions
