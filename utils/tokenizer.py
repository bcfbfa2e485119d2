"""CLIP's text tokenizer: byte-level BPE over a 49,408-token vocabulary.

Text is cleaned (ftfy, HTML entities, whitespace, lower case), split into words by CLIP's pattern, each word's UTF-8
bytes are spelled with printable stand-in characters, and the BPE merges join them into vocabulary tokens. Ids are
identical to those of OpenAI CLIP and open_clip, so pretrained text towers read them unchanged.
"""
import functools
import gzip
import html
from pathlib import Path
from typing import Sequence

import ftfy
import regex
import torch

from utils.errors import UserError

# The merge list of OpenAI CLIP (MIT; source and licence in VOCAB_LICENSE.md): 48,894 merges after a header line.
DEFAULT_VOCAB_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
NUM_MERGES = 49152 - 256 - 2
DEFAULT_CONTEXT_LENGTH = 77
START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"
END_OF_WORD = "</w>"

# Special tokens come first so that a caption spelling one out gets its id, as in CLIP. IGNORECASE matters even
# on lower-cased text: it lets the contractions match case-folding look-alikes (the long s, 'ſ') as CLIP does.
WORD_PATTERN = regex.compile(
    rf"{START_OF_TEXT}|{END_OF_TEXT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
    regex.IGNORECASE,
)
# Text made only of these characters is left unchanged by ftfy.fix_text and html.unescape (no '&', no control
# characters, no escapes, nothing to re-encode), so the costly fixing can be skipped for it.
PLAIN_ASCII = regex.compile(r"[\t\n -%'-~]*")
WORD_CACHE_SIZE = 1 << 18


def byte_to_char_map() -> dict[int, str]:
    """Map each of the 256 byte values to a printable character: BPE then works on strings without whitespace or
    control characters. Printable Latin-1 bytes stand for themselves; the other 68 get code points from 256 up.
    The map's order (printable bytes first) is the order of the first 256 vocabulary ids."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    others = (byte for byte in range(256) if byte not in mapping)
    mapping.update((byte, chr(256 + n)) for n, byte in enumerate(others))
    return mapping


def clean_text(text: str) -> str:
    """Fix mojibake, unescape HTML entities (also double-escaped ones), collapse whitespace, lower-case."""
    if not PLAIN_ASCII.fullmatch(text):
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class Tokenizer:
    """Encodes text to CLIP token ids and decodes ids back to text."""

    def __init__(self, vocab_path: str | Path = DEFAULT_VOCAB_PATH):
        vocab_path = Path(vocab_path)
        if not vocab_path.is_file():
            raise UserError(f"BPE vocabulary file not found: {vocab_path} (expected a gzipped merge list)")
        with gzip.open(vocab_path, "rt", encoding="utf-8") as file:
            lines = file.read().split("\n")[1 : NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]

        self.byte_to_char = byte_to_char_map()
        self.char_to_byte = {char: byte for byte, char in self.byte_to_char.items()}
        byte_chars = list(self.byte_to_char.values())
        tokens = byte_chars + [char + END_OF_WORD for char in byte_chars]
        tokens += ["".join(merge) for merge in merges] + [START_OF_TEXT, END_OF_TEXT]
        self.token_to_id = {token: index for index, token in enumerate(tokens)}
        self.id_to_token = tokens
        self.merge_rank = {merge: rank for rank, merge in enumerate(merges)}
        self.sot_id = self.token_to_id[START_OF_TEXT]
        self.eot_id = self.token_to_id[END_OF_TEXT]
        self.vocab_size = len(tokens)
        # Captions reuse a small vocabulary of words: remembering each word's ids makes BPE a dictionary look-up.
        self.word_ids = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._word_ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without start/end tokens."""
        ids = []
        for word in WORD_PATTERN.findall(clean_text(text)):
            ids.extend(self.word_ids(word))
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of a sequence of ids; the start token is skipped and the end token ends the text (padding too)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        data = bytearray()
        for index in ids:
            if index == self.eot_id:
                break
            if index == self.sot_id:
                continue
            token = self.id_to_token[index]
            word_ends = token.endswith(END_OF_WORD)
            data.extend(self.char_to_byte[char] for char in token.removesuffix(END_OF_WORD))
            if word_ends:
                data.extend(b" ")
        return data.decode("utf-8", errors="replace").strip()

    def tokenize(
        self, texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH, truncate: bool = True
    ) -> torch.Tensor:
        """LongTensor [N, context_length]: start token, text ids, end token, zero padding. A text too long is cut
        so that the end token stays last (the text tower pools at it), or, with truncate=False, rejected."""
        if context_length < 2:
            raise UserError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        if isinstance(texts, str):
            texts = [texts]
        room = context_length - 2
        rows = []
        for text in texts:
            ids = self.encode(text)
            if len(ids) > room:
                if not truncate:
                    raise UserError(
                        f"text of {len(ids) + 2} tokens exceeds context_length {context_length}: {text[:60]!r}"
                    )
                ids = ids[:room]
            rows.append([self.sot_id, *ids, self.eot_id] + [0] * (room - len(ids)))
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), context_length)

    def _word_ids(self, word: str) -> tuple[int, ...]:
        if word in (START_OF_TEXT, END_OF_TEXT):
            return (self.token_to_id[word],)
        chars = "".join(self.byte_to_char[byte] for byte in word.encode("utf-8"))
        return tuple(self.token_to_id[token] for token in self._merge(chars))

    def _merge(self, chars: str) -> list[str]:
        """Apply BPE to one word: repeatedly join every occurrence of the adjacent pair with the lowest merge
        rank, left to right, until no adjacent pair is a merge. The last symbol carries the end-of-word mark."""
        symbols = [*chars[:-1], chars[-1] + END_OF_WORD]
        not_a_merge = len(self.merge_rank)
        while len(symbols) > 1:
            best = min(zip(symbols, symbols[1:]), key=lambda pair: self.merge_rank.get(pair, not_a_merge))
            if best not in self.merge_rank:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols


@functools.cache
def default_tokenizer() -> Tokenizer:
    """The tokenizer with CLIP's vocabulary, built once on first use."""
    return Tokenizer()


def tokenize(
    texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH, truncate: bool = True
) -> torch.Tensor:
    """Token ids of one text or a list of texts as a LongTensor [N, context_length]; see Tokenizer.tokenize."""
    return default_tokenizer().tokenize(texts, context_length, truncate)


def trim_padding(tokens: torch.Tensor, multiple: int = 1) -> torch.Tensor:
    """Drop the trailing columns that are padding in every row: [N, L] -> [N, longest text], rounded up to a
    multiple of `multiple` (fewer distinct shapes for a compiled model to specialise on). Under a causal text
    transformer the features of a text do not depend on the padding after it, so this only saves work. Reads the
    tokens' values: on a GPU that waits for the device, so trim on the host before the copy."""
    used = tokens.ne(0).any(dim=0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    return tokens[:, :min(-(-length // multiple) * multiple, tokens.shape[1])]
