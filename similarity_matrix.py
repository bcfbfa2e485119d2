"""The image x caption cosine-similarity matrix of a CLIP checkpoint: captions down the side, the images as
thumbnails along the top, each pair's similarity in its cell.

  python similarity_matrix.py --checkpoint_path CKPT --img_dir test_images --captions captions.tsv
  python similarity_matrix.py --checkpoint_path CKPT --img_dir data/coco/val2017 \\
      --captions data/coco/annotations/captions_val2017.json --max_images 8

--captions is a tab-separated file of `file name<TAB>caption` lines, or a COCO captions / Karpathy split JSON
(each image's first caption). Writes <output_dir>/similarity_matrix.png and .csv. Settings: flags, --config YAMLs
(repeatable, layered) and key=value overrides, as in every script.
"""
import sys
from pathlib import Path

from dataloader.eval.caption_pairs import read_caption_pairs
from dataloader.image_io import load_readable_images
from evaluation.image_figures import plot_similarity_matrix
from evaluation.inference_model import load_for_inference
from evaluation.report import warn_unreadable, write_similarity_table
from evaluation.settings import SimilarityMatrixSettings
from evaluation.similarity import image_text_similarity
from utils.cli import SettingsParser, run_command
from utils.errors import UserError

THUMBNAIL_SIDE = 256  # decode large enough for a sharp thumbnail, whatever the model's input size
PARSER = SettingsParser(__doc__, SimilarityMatrixSettings)
PARSER.add_field_flags()


def run(config: SimilarityMatrixSettings) -> None:
    pairs = read_caption_pairs(config.captions, config.img_dir, config.max_images)
    device = config.torch_device
    model, preprocess, decision = load_for_inference(config.checkpoint_path, device, config.precision,
                                                     config.batch_size)
    loaded, skipped = load_readable_images([path for path, _ in pairs], max(model.config.image_size,
                                                                            THUMBNAIL_SIDE))
    warn_unreadable(skipped)
    if not loaded:
        raise UserError(f"none of the images named in {config.captions} could be read")
    unreadable = {path for path, _ in skipped}
    captions = [caption for path, caption in pairs if path not in unreadable]
    similarity = image_text_similarity(model, [image for _, image in loaded], captions, preprocess, device,
                                       decision.precision).numpy()
    output_dir = Path(config.output_dir)
    table = write_similarity_table(similarity, captions, [path.name for path, _ in loaded],
                                   output_dir / "similarity_matrix.csv")
    figure = plot_similarity_matrix([image for _, image in loaded], captions, similarity,
                                    output_dir / "similarity_matrix.png", str(config.checkpoint_path))
    print(f"wrote {figure}, {table}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: run(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
