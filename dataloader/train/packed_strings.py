"""Many strings held in two numpy arrays instead of a list of str objects.

Worker processes forked from the training process share its memory until they write to it, and merely reading a
Python str writes its reference count: a list of COCO's 591k captions ends up copied into every worker, page by
page (about 90 MB per worker after one epoch). Bytes in one array are read without writes and stay shared."""
from typing import Iterable

import numpy as np


class PackedStrings:
    def __init__(self, strings: Iterable[str]):
        encoded = [text.encode("utf-8") for text in strings]
        self._ends = np.cumsum([len(data) for data in encoded], dtype=np.int64)
        self._bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        start = self._ends[index - 1] if index > 0 else 0
        return self._bytes[start:self._ends[index]].tobytes().decode("utf-8")
