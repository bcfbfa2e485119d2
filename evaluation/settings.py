"""The settings of every evaluation script, one dataclass each: what its flags, its `--config` files and its
`key=value` overrides fill in (utils.cli.SettingsParser), checked once here."""
import os
from dataclasses import dataclass
from typing import Literal

import torch

from dataloader.eval.caption_sets import CaptionFormat
from dataloader.eval.eval_datasets import READERS
from dataloader.eval.karpathy import SPLITS as KARPATHY_SPLITS
from evaluation.retrieval import DEFAULT_KS
from evaluation.suite_plan import TASKS
from utils.cli import setting
from utils.precision import PRECISIONS

CHECKPOINT_HELP = "our checkpoint, an OpenAI or open_clip weights file, or a model config name"
TEMPLATES_HELP = "a template set, a file with one template per line, or one template such as 'a photo of a {}.'"
CLASSNAMES_HELP = "file with one class name per line, in label order (sorted folder order for folders)"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def check_fraction(settings, name: str) -> None:
    if not 0 < getattr(settings, name) < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {getattr(settings, name)}")


def check_at_least_one(settings, name: str) -> None:
    values = getattr(settings, name)
    if min(values if isinstance(values, list) else [values]) < 1:
        raise ValueError(f"{name} must be at least 1, got {values}")


@dataclass(kw_only=True)
class InferenceSettings:
    batch_size: int = setting(128)
    device: str = setting(default_factory=default_device)
    precision: Literal[PRECISIONS] = setting("auto", "auto: the hardware's choice, measured where it is open")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


@dataclass(kw_only=True)
class LoaderSettings(InferenceSettings):
    num_workers: int = setting(default_factory=default_workers, help="image decoding processes")


@dataclass(kw_only=True)
class EvalSetSettings(LoaderSettings):
    """A checkpoint scored on a labelled set that dataloader.eval.eval_datasets reads."""
    checkpoint_path: str = setting(help=CHECKPOINT_HELP)
    dataset_type: Literal[tuple(sorted(READERS))] = setting(help="the reader of the set")
    data_dir: str = setting(help="the images")
    dataset: str | None = setting(None, "cifar10 or cifar100 for --dataset_type cifar (default: the one the folder "
                                        "holds); otherwise the name of the result files (default: the folder's)")
    classnames: str | None = setting(None, CLASSNAMES_HELP)
    templates: str | None = setting(None, TEMPLATES_HELP + " (default: the dataset's set)")


@dataclass(kw_only=True)
class ZeroShotEvalSettings(EvalSetSettings):
    templates: list[str] | None = setting(None, TEMPLATES_HELP + " (default: the dataset's set); several: each "
                                                "is reported on the same images, to pick the best prompts")
    batch_size: int = setting(64)
    channels_last: bool = setting(True, "channels-last image tensors for a ResNet tower (faster on CPUs)")
    output_dir: str = setting("zero_shot_eval_output")


@dataclass(kw_only=True)
class LinearProbeSettings(EvalSetSettings):
    test_dir: str | None = setting(None, "the test images (default: the set's test split (cifar, wds), else "
                                         "--test_fraction)")
    test_fraction: float = setting(0.2, "share of each class held out for testing when there is no test folder")
    validation_fraction: float = setting(0.2, "share of each training class held out to choose the regularisation")
    split_seed: int = setting(0)
    regularisation: float | None = setting(None, "use this lambda instead of sweeping 1e-6 ... 1e6 on the "
                                                 "validation split")
    k_shot: list[int] | None = setting(None, "also fit probes on K images per class, e.g. 1,2,4,8,16")
    k_shot_seeds: list[int] = setting(default_factory=lambda: [0, 1, 2])
    cache_dir: str = setting("feature_cache")
    output_dir: str = setting("linear_probe_output")

    def __post_init__(self):
        check_fraction(self, "test_fraction")
        check_fraction(self, "validation_fraction")
        if self.k_shot is not None:
            if min(self.k_shot) < 1:  # checked here, before features are computed and a probe is fitted
                raise ValueError(f"k_shot values must be at least 1, got {min(self.k_shot)}")
            self.k_shot = sorted(set(self.k_shot))


@dataclass(kw_only=True)
class FeatureExportSettings(EvalSetSettings):
    dataset_type: Literal[tuple(sorted(READERS))] | None = setting(None, "the reader of a labelled set (--data_dir)")
    data_dir: str | None = setting(None, "a labelled set's images")
    img_dir: str | None = setting(None, "instead of --data_dir: an unlabelled folder of images (searched through)")
    captions: str | None = setting(None, "instead of --data_dir: captions to encode, one per line in a .txt, or "
                                         "the caption column of a CSV/TSV or JSONL table")
    image_key: str = setting("filepath", "the image column of a --captions table")
    caption_key: str = setting("caption", "the caption column of a --captions table")
    split: str | None = setting(None, "train or test for CIFAR (default: test)")
    output: str = setting(help="the file to write (.safetensors or .npz)")
    cache_dir: str = setting("feature_cache")

    def __post_init__(self):
        if (self.data_dir is None) == (self.img_dir is None and self.captions is None):
            raise ValueError("give --data_dir (with --dataset_type), or --img_dir and/or --captions")
        if self.data_dir is not None and self.dataset_type is None:
            raise ValueError("data_dir needs dataset_type: cifar, imagenet or folder")


@dataclass(kw_only=True)
class CaptionReadingSettings:
    """How captioned images are read, in any format training reads (dataloader.eval.caption_sets), named as
    training names it."""
    format: CaptionFormat = setting("auto", "auto: told from the name (.json, .csv/.tsv, .jsonl, .tar ...)")
    image_key: str = setting("filepath", "CSV column / JSONL key of the image path")
    caption_key: str = setting("caption", "CSV column / JSONL key (or shards' .json key) of the caption")


@dataclass(kw_only=True)
class CaptionSetSettings(CaptionReadingSettings):
    annotation_file: str = setting(help="the captions: a COCO captions JSON or Karpathy split file, a CSV/TSV or "
                                        "JSONL table (one image and caption per row), or webdataset shards")
    img_dir: str | None = setting(None, "the folder of the images (needed for COCO; tables: default the table's "
                                        "folder; shards hold their images)")


@dataclass(kw_only=True)
class RecallSettings:
    """Image-text retrieval's recall@K on a caption set (evaluation.retrieval)."""
    split: Literal[KARPATHY_SPLITS] = setting("test", "the split of a Karpathy split file")
    recall_k: list[int] = setting(default_factory=lambda: list(DEFAULT_KS), help="the K of recall@K")

    def __post_init__(self):
        check_at_least_one(self, "recall_k")
        self.recall_k = sorted(set(self.recall_k))


@dataclass(kw_only=True)
class RetrievalEvalSettings(CaptionSetSettings, RecallSettings, LoaderSettings):
    checkpoint_path: str = setting(help=CHECKPOINT_HELP)
    name: str | None = setting(None, "name of the result files (default: the captions file's name)")
    pair_scores: str | None = setting(None, "also write OUT.csv: each image-caption pair's CLIP score, 100 x the "
                                            "cosine similarity of the normalised features, for filtering data")
    cache_dir: str = setting("feature_cache")
    output_dir: str = setting("retrieval_output")


@dataclass(kw_only=True)
class EvalSuiteSettings(CaptionReadingSettings, RecallSettings, LoaderSettings):
    checkpoints: list[str] = setting(help="[NAME=]PATH: anything load_model reads; NAME= labels the table's row")
    data_dir: list[str] = setting(default_factory=list, help="labelled image folders for zeroshot and "
                                  "linear_probe, each a table (a folder of domain folders: one column each)")
    dataset_type: Literal[tuple(sorted(READERS))] = setting("folder")
    annotation_file: list[str] = setting(default_factory=list, help="[NAME=]FILE: caption sets for retrieval, one "
                                         "column each (NAME: default the file's name): COCO captions or Karpathy "
                                         "JSON, CSV/TSV or JSONL tables, webdataset shards")
    img_dir: list[str] = setting(default_factory=list, help="the caption sets' images: one folder for all, or one "
                                 "per annotation_file in order (needed for COCO; default: a table's folder)")
    tasks: list[Literal[TASKS]] = setting(default_factory=lambda: ["zeroshot"],
                                          help="zeroshot and linear_probe score data_dir, retrieval annotation_file")
    templates: str | None = setting(None, "zero-shot " + TEMPLATES_HELP + " (default: each dataset's set)")
    test_fraction: float = setting(0.2, "linear probe: share of each class held out for testing (and for "
                                        "validation) when the folder has no test split")
    split_seed: int = setting(0)
    output_dir: str = setting("eval_suite_output")
    cache_dir: str | None = setting(None, "cell results and features (default: OUTPUT_DIR/cache)")
    progress: bool = setting(True, "a progress bar over the cells")

    def __post_init__(self):
        super().__post_init__()
        check_fraction(self, "test_fraction")


@dataclass(kw_only=True)
class DemoSettings(InferenceSettings):
    checkpoint_path: str = setting(help=CHECKPOINT_HELP)
    img_path: str | None = setting(None, "one image")
    img_dir: str | None = setting(None, "a folder of images (files that are not images are skipped)")
    labelled_dir: str | None = setting(None, "a class-per-folder set: a grid of --examples images captioned "
                                             "'Predicted (True)'")
    classes: str | None = setting(None, 'comma-separated class names, e.g. "cat,dog,car" (default: CIFAR-100)')
    classnames: str | None = setting(None, "file with one class name per line")
    templates: str = setting("cifar", TEMPLATES_HELP)
    top_k: int = setting(5)
    examples: int = setting(16, "with --labelled_dir: how many images, spread over the classes")
    seed: int = setting(0, "with --labelled_dir: which images are drawn")
    show_prediction: bool = setting(False, "save a figure of each image beside its top classes in --output_dir")
    output_dir: str = setting("demo_output")
    batch_size: int = setting(32)

    def __post_init__(self):
        images = [name for name in ("img_path", "img_dir", "labelled_dir") if getattr(self, name) is not None]
        if not images:
            raise ValueError("one of img_path, img_dir or labelled_dir is required")
        if len(images) > 1:
            raise ValueError(f"{' and '.join(images)} exclude each other: keep one")
        if self.classes is not None and self.classnames is not None:
            raise ValueError("classes and classnames exclude each other: keep one")
        if self.classes is not None and self.labelled_dir is not None:
            raise ValueError("classes does not go with labelled_dir: the class folders name the classes "
                             "(classnames renames them, in sorted folder order)")
        check_at_least_one(self, "examples")


@dataclass(kw_only=True)
class SimilarityMatrixSettings(InferenceSettings):
    checkpoint_path: str = setting(help=CHECKPOINT_HELP)
    img_dir: str = setting(help="the folder of the images")
    captions: str = setting(help="file name<TAB>caption lines, or a captions JSON")
    max_images: int = setting(8, "the first N captioned images")
    output_dir: str = setting("similarity_output")
    batch_size: int = setting(32)

    def __post_init__(self):
        check_at_least_one(self, "max_images")
