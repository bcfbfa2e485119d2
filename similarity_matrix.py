"""The image x caption cosine-similarity matrix of a CLIP checkpoint: captions down the side, the images as
thumbnails along the top, each pair's similarity in its cell.

  python similarity_matrix.py --checkpoint_path CKPT --img_dir test_images --captions captions.tsv
  python similarity_matrix.py --checkpoint_path CKPT --img_dir data/coco/val2017 \\
      --captions data/coco/annotations/captions_val2017.json --max_images 8

--captions is a tab-separated file of `file name<TAB>caption` lines, or a COCO captions / Karpathy split JSON
(each image's first caption). Writes <output_dir>/similarity_matrix.png and .csv.
"""
import argparse
import sys
from pathlib import Path

import torch

from dataloader.eval.caption_pairs import read_caption_pairs
from dataloader.image_io import load_readable_images
from evaluation.image_figures import plot_similarity_matrix
from evaluation.report import write_similarity_table
from evaluation.similarity import image_text_similarity
from model import load_model
from utils.cli import (ScriptArgumentParser, add_checkpoint_argument, add_inference_arguments,
                       parse_with_config, run_command)
from utils.errors import UserError
from utils.precision import choose_inference_precision

THUMBNAIL_SIDE = 256  # decode large enough for a sharp thumbnail, whatever the model's input size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    add_checkpoint_argument(parser)
    parser.add_argument("--img_dir", required=True)
    parser.add_argument("--captions", required=True, help="file name<TAB>caption lines, or a captions JSON")
    parser.add_argument("--max_images", type=int, default=8, help="the first N captioned images (default 8)")
    parser.add_argument("--output_dir", default="similarity_output")
    add_inference_arguments(parser, batch_size=32, loader_workers=False)
    args = parse_with_config(parser, argv)
    if args.max_images < 1:
        parser.error("--max_images must be at least 1")
    return args


def run(args: argparse.Namespace) -> None:
    pairs = read_caption_pairs(args.captions, args.img_dir, args.max_images)
    device = torch.device(args.device)
    model, preprocess = load_model(args.checkpoint_path, device=device)
    precision = choose_inference_precision(args.precision, model, device, args.batch_size,
                                           channels_last=False).precision
    loaded, skipped = load_readable_images([path for path, _ in pairs], max(model.config.image_size,
                                                                            THUMBNAIL_SIDE))
    for path, reason in skipped:
        print(f"warning: skipping {path}: not a readable image ({reason})", file=sys.stderr)
    if not loaded:
        raise UserError(f"none of the images named in {args.captions} could be read")
    unreadable = {path for path, _ in skipped}
    captions = [caption for path, caption in pairs if path not in unreadable]
    similarity = image_text_similarity(model, [image for _, image in loaded], captions, preprocess, device,
                                       precision).numpy()
    output_dir = Path(args.output_dir)
    table = write_similarity_table(similarity, captions, [path.name for path, _ in loaded],
                                   output_dir / "similarity_matrix.csv")
    figure = plot_similarity_matrix([image for _, image in loaded], captions, similarity,
                                    output_dir / "similarity_matrix.png", str(args.checkpoint_path))
    print(f"wrote {figure}, {table}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: run(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
