"""Image-text retrieval recall@K, mean and median rank of a CLIP checkpoint on a COCO-format captions file or a
Karpathy split file (the 5k COCO / 1k Flickr30k test images the CLIP paper reports), and its image folder.

  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/coco/annotations/captions_val2017.json \\
      --img_dir data/coco/val2017
  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/karpathy/dataset_coco.json \\
      --img_dir data/coco --recall_k 1 5 10 50
  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/karpathy/dataset_flickr30k.json \\
      --img_dir data/flickr30k/images

Every image is scored with all of its captions: image -> text counts a hit when any of its captions is in the top K.
Settings: flags, --config YAMLs (repeatable, layered) and key=value overrides, as in every script.
"""
import sys
from pathlib import Path

from dataloader.eval.karpathy import read_retrieval_captions
from evaluation.features import cached_image_features, feature_cache_file
from evaluation.inference_model import load_for_inference
from evaluation.report import run_info, warn_unreadable, write_retrieval_report
from evaluation.retrieval import caption_image_features, captioned_retrieval, text_features
from evaluation.settings import RetrievalEvalSettings
from utils.cli import SettingsParser, run_command
from utils.errors import UserError

PARSER = SettingsParser(__doc__, RetrievalEvalSettings)
PARSER.add_field_flags()


def evaluate(config: RetrievalEvalSettings) -> None:
    device, annotations = config.torch_device, config.annotation_file
    captioned = read_retrieval_captions(annotations, config.img_dir, config.split)
    for path in captioned.missing:
        print(f"warning: image listed in {annotations} not found: {path}", file=sys.stderr)
    if not captioned.image_paths:
        raise UserError(f"none of the images of {annotations} is in {config.img_dir}")
    model, preprocess, decision = load_for_inference(config.checkpoint_path, device, config.precision,
                                                     config.batch_size)
    name, precision = config.name or Path(annotations).stem, decision.precision
    print(f"{name}: {len(captioned.image_paths)} images, {sum(map(len, captioned.captions))} captions, "
          f"{decision.describe()}")
    cache_file = feature_cache_file(
        config.cache_dir, f"{name}-images", config.checkpoint_path,
        {"annotation_file": str(Path(annotations).resolve()), "image_dir": str(Path(config.img_dir).resolve()),
         "images": len(captioned.image_paths)},
        {"image_size": model.config.image_size, "mean": list(model.config.image_mean),
         "std": list(model.config.image_std), "precision": precision})
    image_features, from_cache = cached_image_features(cache_file, lambda: caption_image_features(
        model, captioned, preprocess, device, precision, batch_size=config.batch_size, num_workers=config.num_workers))
    if from_cache:
        print(f"image features read from {cache_file}")
    warn_unreadable(image_features.unreadable)
    if not len(image_features.labels):
        raise UserError(f"none of the images of {annotations} in {config.img_dir} could be read")
    ks = sorted(set(config.recall_k))
    result = captioned_retrieval(image_features, captioned.captions, lambda texts: text_features(
        model, texts, device, precision, batch_size=config.batch_size), ks)
    info = run_info(config.checkpoint_path, name, precision, annotation_file=str(annotations),
                    image_dir=str(config.img_dir), split=config.split, num_missing_images=len(captioned.missing),
                    num_unreadable_images=len(image_features.unreadable))
    lines, text_path, json_path = write_retrieval_report(result, ks, config.output_dir, name, info)
    print("\n".join(lines))
    for line in lines:
        if line.startswith("WARNING"):
            print(line, file=sys.stderr)
    print(f"wrote {text_path}, {json_path}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: evaluate(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
