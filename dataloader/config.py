"""What the training data pipelines read and how: paths, worker processes, sampling and augmentation options."""
import dataclasses
import typing
from pathlib import Path
from typing import Literal

DEFAULTS_FILE = Path(__file__).with_name("data_config.yaml")
COCO_TRAIN_IMAGES = "data/coco/train2017"
SidedCaptions = Literal["swap", "no_flip"]  # dataloader.train.caption_sides


@dataclasses.dataclass
class LoaderConfig:
    """How training images are loaded, whatever the dataset."""
    num_workers: int = 4
    prefetch_factor: int = 2  # batches each worker prepares ahead; used only when num_workers > 0
    strict_images: bool = False  # raise on a missing/corrupt image instead of skipping it
    train_crop: Literal["random", "center"] = "random"
    random_crop_min_area: float = 0.9  # "random": a square of this to 1.0 times the largest square's area
    random_crop_max_aspect: float = 1.0  # "random": the crop's width / height drawn in [1 / this, this]
    horizontal_flip: float = 0.0  # probability of mirroring a training image left to right
    color_jitter: float = 0.0  # brightness, contrast and saturation each scaled by a factor in [1 - this, 1 + this]

    def __post_init__(self):
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 (load in the training process) or more, got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be at least 1, got {self.prefetch_factor}")
        if not 0.0 < self.random_crop_min_area <= 1.0:
            raise ValueError(f"random_crop_min_area must be in (0, 1], got {self.random_crop_min_area}")
        if self.random_crop_max_aspect < 1:
            raise ValueError(f"random_crop_max_aspect must be at least 1, got {self.random_crop_max_aspect}")
        if not 0.0 <= self.horizontal_flip <= 1.0:
            raise ValueError(f"horizontal_flip must be a probability in [0, 1], got {self.horizontal_flip}")
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"color_jitter must be in [0, 1] (factors stay non-negative), got {self.color_jitter}")


@dataclasses.dataclass
class DataConfig(LoaderConfig):
    """CLIP training data: a COCO captions file, a CSV/TSV or JSONL table of image paths and captions, or
    webdataset tar shards."""
    train_data: str | None = None  # any format; None: the COCO file train_annotation_file
    format: Literal["auto", "coco", "csv", "jsonl", "webdataset"] = "auto"
    train_img_dir: str | None = None  # COCO: default COCO_TRAIN_IMAGES; CSV/JSONL: default the table's folder
    train_annotation_file: str = "data/coco/annotations/captions_train2017.json"
    image_key: str = "filepath"  # CSV column / JSONL key of the image path
    caption_key: str = "caption"  # CSV column / JSONL key (or shards' .json key) of the caption
    all_captions: bool = False  # every caption a sample; default: each image once per epoch, one caption drawn
    captions_per_image: int = 1  # listed sets: captions drawn per sample, each of them the image's positive
    memory_cache_mb: float = 1024  # decode a listed training set once and keep it in memory if it fits (0: never)
    num_samples: int | None = None  # shards: samples per epoch; None: from sizes.json / *_stats.json
    shuffle_buffer: int = 1000  # shards: samples held for shuffling by each worker
    resampled: bool = False  # shards: draw shards with replacement instead of each once per epoch
    sided_captions: SidedCaptions = "swap"  # a flipped sample's caption naming left/right: swap the sides | no_flip

    def __post_init__(self):
        super().__post_init__()
        if self.memory_cache_mb < 0:
            raise ValueError(f"memory_cache_mb must be 0 (never) or more, got {self.memory_cache_mb}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be at least 1 (1: no shuffling), got {self.shuffle_buffer}")
        if self.captions_per_image < 1:
            raise ValueError(f"captions_per_image must be at least 1, got {self.captions_per_image}")
        if self.captions_per_image > 1 and self.all_captions:
            raise ValueError(f"captions_per_image={self.captions_per_image} draws several of an image's captions per "
                             "sample, all_captions makes each caption a sample of its own: set one of them")
        if self.sided_captions not in typing.get_args(SidedCaptions):
            raise ValueError(f"sided_captions must be swap or no_flip, got {self.sided_captions!r}")


@dataclasses.dataclass
class LabelledDataConfig(LoaderConfig):
    """Fine-tuning data: any labelled set that zeroshot_eval.py reads (dataloader.eval.eval_datasets)."""
    dataset_type: Literal["cifar", "imagenet", "folder"] = "folder"
    data_dir: str = ""  # the training images (CIFAR: the folder of the batches; its train split is used)
    test_dir: str | None = None  # the test images; default: CIFAR's test split, else test_fraction of data_dir
    dataset: str | None = None  # cifar10 | cifar100 for CIFAR; otherwise the name of the result files
    classnames: str | None = None  # one class name per line, in label order (replaces the folder names)
    test_fraction: float = 0.2  # share of each class held out for testing when there is no test split or folder
    split_seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not self.data_dir:
            raise ValueError("data.data_dir is required: the folder of the training images (--data_dir)")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction}")
