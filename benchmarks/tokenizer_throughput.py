"""Tokenizer throughput against open_clip's on short COCO-style captions, with a check that the ids are identical.

    python -m benchmarks.tokenizer_throughput [--captions 20000] [--repeats 3]
"""
import argparse

import torch

from benchmarks.common import (Row, add_machine_arguments, coco_like_captions, machine_report, markdown_table,
                               median_seconds, torch_threads)
from utils.tokenizer import tokenize


def run(count: int, repeats: int) -> list[Row]:
    import open_clip

    texts = coco_like_captions(count)
    # the first call of each fills its word cache, as the first epoch of a training run does
    their_ids, our_ids = open_clip.tokenize(texts), tokenize(texts)
    theirs = count / median_seconds(lambda: open_clip.tokenize(texts), warmup=0, repeats=repeats)
    ours = count / median_seconds(lambda: tokenize(texts), warmup=0, repeats=repeats)
    identical = torch.equal(our_ids, their_ids)
    print(f"tokenizer: open_clip {theirs:,.0f} captions/s, ours {ours:,.0f} ({ours / theirs:.2f}x), "
          f"ids identical: {identical}")
    return [Row("tokenizer", f"{count:,} COCO-style captions, 1 thread", ours, theirs, "captions/s", "open_clip",
                f"ids identical: {identical}")]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    add_machine_arguments(parser)
    args = parser.parse_args(argv)
    print(machine_report(args.peak_size))
    with torch_threads(1):
        rows = run(args.captions, args.repeats)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
