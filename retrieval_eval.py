"""Image-text retrieval recall@K, mean and median rank of a CLIP checkpoint on captions in any format training
reads: COCO captions or Karpathy split files (the CLIP paper's 5k COCO / 1k Flickr30k tests), CSV/TSV, JSONL, shards.

  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/coco/annotations/captions_val2017.json \\
      --img_dir data/coco/val2017
  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/karpathy/dataset_coco.json \\
      --img_dir data/coco --recall_k 1 5 10 50
  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/mine/val.csv --pair_scores scores.csv

Every image is scored with all of its captions (a table's rows naming it): image -> text counts a hit when any of
its captions is in the top K. --pair_scores: each pair's CLIP score (100 x cosine similarity), to filter data by.
Settings: flags, --config YAMLs (repeatable, layered) and key=value overrides, as in every script.
"""
import sys
from pathlib import Path

from dataloader.eval.caption_sets import listed_image_names, read_caption_set
from evaluation.inference_model import load_for_inference
from evaluation.pair_scores import write_pair_scores
from evaluation.report import run_info, warn_unreadable, write_retrieval_report
from evaluation.retrieval import cached_caption_image_features, caption_pairs, pair_retrieval, text_features
from evaluation.settings import RetrievalEvalSettings
from utils.cli import SettingsParser, run_command
from utils.errors import UserError

PARSER = SettingsParser(__doc__, RetrievalEvalSettings)
PARSER.add_field_flags()


def evaluate(config: RetrievalEvalSettings) -> None:
    device, annotations = config.torch_device, config.annotation_file
    captioned = read_caption_set(annotations, config.img_dir, data_format=config.format, image_key=config.image_key,
                                 caption_key=config.caption_key, split=config.split)
    for path in captioned.missing:
        print(f"warning: image listed in {annotations} not found: {path}", file=sys.stderr)
    if not captioned.image_paths:
        raise UserError(f"none of the images of {annotations} is in {config.img_dir or Path(annotations).parent}")
    model, preprocess, decision = load_for_inference(config.checkpoint_path, device, config.precision,
                                                     config.batch_size)
    name, precision = config.name or Path(annotations).stem, decision.precision
    print(f"{name}: {len(captioned.image_paths)} images, {sum(map(len, captioned.captions))} captions, "
          f"{decision.describe()}")
    image_features, cache_file, from_cache = cached_caption_image_features(
        model, captioned, preprocess, checkpoint=config.checkpoint_path, name=name, cache_dir=config.cache_dir,
        device=device, precision=precision, batch_size=config.batch_size, num_workers=config.num_workers)
    print(f"image features read from {cache_file}" if from_cache else "image features computed")
    warn_unreadable(image_features.unreadable)
    if not len(image_features.labels):
        raise UserError(f"none of the images of {annotations} in {config.img_dir} could be read")
    texts, caption_image = caption_pairs(image_features, captioned.captions)
    caption_features = text_features(model, texts, device, precision, batch_size=config.batch_size)
    result = pair_retrieval(image_features, caption_features, caption_image, config.recall_k)
    info = run_info(config.checkpoint_path, name, precision, annotation_file=str(annotations),
                    image_dir=str(config.img_dir), split=config.split, num_missing_images=len(captioned.missing),
                    num_unreadable_images=len(image_features.unreadable))
    lines, text_path, json_path = write_retrieval_report(result, config.recall_k, config.output_dir, name, info)
    print("\n".join(lines))
    for line in lines:
        if line.startswith("WARNING"):
            print(line, file=sys.stderr)
    print(f"wrote {text_path}, {json_path}")
    if config.pair_scores:
        written = write_pair_scores(config.pair_scores, captioned, image_features, texts, caption_features,
                                    caption_image, lambda paths: listed_image_names(paths, annotations, config.img_dir),
                                    (config.image_key, config.caption_key))
        print(f"wrote {written}: {len(texts)} image-caption pairs with their CLIP score (100 x cosine similarity)")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: evaluate(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
