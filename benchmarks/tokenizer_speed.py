"""Tokenizer throughput against open_clip's on short COCO-style captions, with a check that the ids are identical.

    python benchmarks/tokenizer_speed.py [--captions 20000] [--repeats 5]
"""
import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import open_clip  # noqa: E402
import torch  # noqa: E402

from utils.tokenizer import tokenize  # noqa: E402

SUBJECTS = ["A man", "A woman", "Two dogs", "A little girl", "A group of people", "A cat", "An old bus", "A giraffe",
            "Several zebras", "A young boy", "A plate", "A red fire hydrant", "The kitchen", "A skateboarder"]
VERBS = ["riding", "sitting on", "standing next to", "holding", "looking at", "eating", "walking down", "parked near",
         "flying over", "lying on", "playing with", "covered in"]
OBJECTS = ["a wave", "the beach", "a wooden bench", "a busy street", "a pizza", "a snowy hill", "a large clock tower",
           "the grass", "a frisbee", "some broccoli", "an umbrella", "a tennis racket", "a laptop computer"]
ENDINGS = [".", "", " in the rain.", " at night.", ", smiling.", " while others watch.", " on a sunny day."]


def captions(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
            for _ in range(count)]


def captions_per_second(tokenize_fn, texts: list[str], repeats: int) -> tuple[float, torch.Tensor]:
    ids = tokenize_fn(texts)  # warm caches, as in a training run
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tokenize_fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    texts = captions(args.captions)
    theirs, their_ids = captions_per_second(open_clip.tokenize, texts, args.repeats)
    ours, our_ids = captions_per_second(tokenize, texts, args.repeats)
    print(f"open_clip: {theirs:,.0f} captions/s")
    print(f"ours:      {ours:,.0f} captions/s ({ours / theirs:.2f}x), ids identical: {torch.equal(our_ids, their_ids)}")


if __name__ == "__main__":
    main()
