"""Export a CLIP checkpoint's image features (with labels and file paths) of any evaluation set, and the class
text embeddings, to safetensors or npz, for your own probes.

  python extract_features.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/photo \\
      --output features/pacs_photo.safetensors
  python extract_features.py --checkpoint_path CKPT --dataset_type cifar --data_dir data/CIFAR100 --split train \\
      --output features/cifar100_train.npz
  python extract_features.py --checkpoint_path CKPT --img_dir photos/ --captions captions.txt --output mine.npz

Reading the file back:
  from safetensors import safe_open           |  import numpy as np
  with safe_open(PATH, "pt") as f:            |  data = np.load(PATH)
      x = f.get_tensor("image_features")      |  x, y = data["image_features"], data["labels"]
      names = json.loads(f.metadata()["class_names"])
Settings: flags, --config YAMLs (repeatable, layered) and key=value overrides, as in every script.
"""
import sys

from dataloader.eval.caption_sets import read_caption_texts
from evaluation.feature_export import check_output_file, readable_paths, write_feature_file
from evaluation.feature_sets import own_data_features, read_set_features
from evaluation.inference_model import load_for_inference
from evaluation.report import warn_unreadable
from evaluation.settings import FeatureExportSettings
from evaluation.template_sets import load_templates
from evaluation.zeroshot import zero_shot_head
from utils.cli import SettingsParser, run_command

PARSER = SettingsParser(__doc__, FeatureExportSettings)
PARSER.add_field_flags()


def export(config: FeatureExportSettings) -> None:
    output, device = check_output_file(config.output), config.torch_device
    texts = None if config.captions is None else read_caption_texts(config.captions, config.image_key,
                                                                    config.caption_key)
    model, preprocess, decision = load_for_inference(config.checkpoint_path, device, config.precision,
                                                     config.batch_size)
    precision = decision.precision
    if config.data_dir is None:
        tensors, strings = own_data_features(model, preprocess, config.img_dir, texts, device=device,
                                             precision=precision, batch_size=config.batch_size,
                                             num_workers=config.num_workers)
        print(f"{', '.join(f'{name} {list(tensor.shape)}' for name, tensor in tensors.items())}; "
              f"wrote {write_feature_file(output, tensors, strings)}")
        return
    eval_set, cached = read_set_features(
        model, preprocess, config.dataset_type, config.data_dir, config.split, checkpoint=config.checkpoint_path,
        device=device, precision=precision, batch_size=config.batch_size, num_workers=config.num_workers,
        cache_dir=config.cache_dir, dataset_name=config.dataset, class_names_file=config.classnames)
    features = cached.features
    warn_unreadable(features.unreadable)
    # CIFAR's images live in batch files: name each by set, split and index instead of a file path
    all_paths = [str(path) for path in getattr(eval_set.dataset, "paths", [])] or \
        [f"{eval_set.name}/{config.split or 'test'}/{index}" for index in range(len(eval_set.dataset))]
    _, templates = load_templates(config.templates or eval_set.default_templates)
    text_embeddings = zero_shot_head(model, eval_set.class_names, templates, device, precision).T.cpu()
    written = write_feature_file(output, {"image_features": features.features, "labels": features.labels,
                                          "text_embeddings": text_embeddings},
                                 {"paths": readable_paths(all_paths, features.unreadable),
                                  "class_names": eval_set.class_names})
    print(f"{eval_set.name}: {len(features.labels)} images x {features.features.shape[1]} features, "
          f"{len(eval_set.class_names)} class text embeddings ({cached.describe()}); wrote {written}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: export(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
