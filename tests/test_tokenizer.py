import html
import random

import ftfy
import open_clip
import pytest
import torch

from utils.errors import UserError
from utils.tokenizer import PLAIN_ASCII, Tokenizer, default_tokenizer, tokenize

SOT, EOT = 49406, 49407

FRAGMENTS = [
    # plain and mixed-case words, contractions (also upper-case and curly-quoted)
    "a photo of a cat", "Two DOGS playing", "tHe QuIcK bRoWn FoX", "it's", "don't", "they're", "we've", "I'm",
    "you'll", "he'd", "IT'S", "WON'T", "she’s", "rock 'n' roll", "'s", "o'clock",
    # accents, combining marks, other scripts, emoji
    "café", "naïve", "Ångström", "crème brûlée", "e\u0301", "n\u0303o", "a\u0308\u0304", "東京タワー", "北京烤鸭",
    "한국어 문장", "مرحبا بالعالم", "שלום", "Привет мир", "ελληνικά", "हिन्दी", "😀", "🐱‍👤", "👍🏽", "🇫🇷",
    "ſtraße", "'ſ", "ＦＵＬＬＷＩＤＴＨ", "ﬁne ﬂower",
    # HTML entities, double-escaped too
    "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#39;", "&#x27;", "&quot;quoted&quot;", "&amp;amp;", "&amp;lt;", "&nbsp;",
    "Tom &amp; Jerry", "<b>tag</b> &amp;", "&copy; 2021", "&unknown;",
    # mojibake that ftfy repairs
    "cafÃ©", "â€œquotedâ€\x9d", "doesnâ€™t", "Ã¼ber", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "voilÃ\xa0 le travail",
    # punctuation, numbers
    "!!!", "...", "?!", "—", "–", "«guillemets»", "(parentheses)", "[brackets]", "#hashtag", "@user", "e-mail",
    "12345", "3.14159", "1,000,000", "½", "٣٤٥", "2nd", "10:30pm", "$9.99", "50%", "C++", "a/b\\c", "~`^|",
    # whitespace and control characters
    "\n", "\t", "  ", "\r\n", "\u00a0", "\u3000", "\x00", "\x0b", "\x1b[31mred\x1b[0m", "\u200b",
    # special tokens spelled out
    "<start_of_text>", "<END_OF_TEXT>",
]
SEPARATORS = [" ", " ", " ", "", "\n", "\t", "  ", " , "]


def varied_texts(count: int, seed: int = 0) -> list[str]:
    """Random joins of the fragments above, random printable-and-control ASCII noise, and edge cases."""
    rng = random.Random(seed)
    texts = ["", " ", "\n\t  \r\n", "A", "a photo of a dog."]
    for _ in range(count):
        if rng.random() < 0.15:
            texts.append("".join(chr(rng.randrange(128)) for _ in range(rng.randrange(1, 40))))
            continue
        parts = rng.choices(FRAGMENTS, k=rng.randrange(1, 12))
        texts.append("".join(part + rng.choice(SEPARATORS) for part in parts))
    return texts


def long_caption(words: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    vocabulary = ["a", "large", "Brown", "dog", "runs", "across", "the", "field,", "chasing", "frisbee!", "café"]
    return " ".join(rng.choice(vocabulary) for _ in range(words))


@pytest.fixture(scope="module")
def reference():
    return open_clip.get_tokenizer("ViT-B-32")


def first_mismatch(ours: torch.Tensor, theirs: torch.Tensor, texts: list[str]) -> str | None:
    rows = (ours != theirs).any(dim=1).nonzero().flatten().tolist()
    return None if not rows else f"{texts[rows[0]]!r}: ours {ours[rows[0]].tolist()} theirs {theirs[rows[0]].tolist()}"


def test_special_ids_and_vocabulary_size():
    tokenizer = default_tokenizer()
    assert (tokenizer.sot_id, tokenizer.eot_id, tokenizer.vocab_size) == (SOT, EOT, 49408)


def test_ids_identical_to_open_clip_on_varied_texts():
    texts = varied_texts(1200) + [long_caption(n) for n in (60, 80, 150, 400)]
    ours, theirs = tokenize(texts), open_clip.tokenize(texts)
    assert ours.dtype == torch.long and ours.shape == (len(texts), 77)
    assert first_mismatch(ours, theirs, texts) is None


def test_encode_identical_to_open_clip_beyond_the_context(reference):
    texts = varied_texts(300, seed=2) + [long_caption(300)]
    for text in texts:
        assert default_tokenizer().encode(text) == reference.encode(text), repr(text)


@pytest.mark.parametrize("context_length", [2, 5, 16, 32, 100])
def test_other_context_lengths_identical_to_open_clip(context_length):
    texts = varied_texts(200, seed=3) + [long_caption(120)]
    ours = tokenize(texts, context_length=context_length)
    theirs = open_clip.tokenize(texts, context_length=context_length)
    assert ours.shape == (len(texts), context_length)
    assert first_mismatch(ours, theirs, texts) is None


def test_long_caption_is_truncated_with_end_token_last():
    caption = long_caption(200)
    full = default_tokenizer().encode(caption)
    assert len(full) > 150
    row = tokenize(caption)[0]
    assert row[0] == SOT and row[-1] == EOT
    assert row[1:-1].tolist() == full[:75]


def test_short_text_is_zero_padded_after_end_token():
    row = tokenize("a photo of a cat")[0]
    ids = default_tokenizer().encode("a photo of a cat")
    assert row[: len(ids) + 2].tolist() == [SOT, *ids, EOT]
    assert not row[len(ids) + 2 :].any()


def test_empty_and_whitespace_only_texts_hold_only_start_and_end():
    rows = tokenize(["", "   ", "\n\t\r\n"])
    assert rows[:, :2].tolist() == [[SOT, EOT]] * 3
    assert not rows[:, 2:].any()


def test_empty_list_gives_empty_batch():
    assert tokenize([]).shape == (0, 77)


def test_truncate_false_rejects_text_too_long_and_accepts_exact_fit():
    with pytest.raises(UserError, match="exceeds context_length 77"):
        tokenize(["a cat", long_caption(100)], truncate=False)
    with pytest.raises(UserError, match="exceeds context_length 77"):
        tokenize(" ".join(["cat"] * 76), truncate=False)
    row = tokenize(" ".join(["cat"] * 75), truncate=False)[0]
    assert row[0] == SOT and row[-1] == EOT and row[1:-1].unique().numel() == 1


def test_context_length_below_two_is_rejected():
    with pytest.raises(UserError, match="context_length must be at least 2"):
        tokenize("a cat", context_length=1)


def test_decode_round_trips_plain_lower_case_text():
    tokenizer = default_tokenizer()
    for text in ["a photo of a cat", "two dogs playing in the snow", "the quick brown fox jumps over the lazy dog"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
        assert tokenizer.decode(tokenize(text)[0]) == text


def test_plain_ascii_is_left_unchanged_by_ftfy_and_html_unescape():
    """The assumption behind clean_text's shortcut for text of PLAIN_ASCII characters."""
    rng = random.Random(4)
    alphabet = "\t\n" + "".join(chr(c) for c in range(32, 127) if chr(c) != "&")
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        assert PLAIN_ASCII.fullmatch(text)
        assert html.unescape(html.unescape(ftfy.fix_text(text))) == text, repr(text)


def test_missing_vocabulary_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Tokenizer(tmp_path / "missing.txt.gz")
