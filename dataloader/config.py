"""What the training data pipeline reads and how: paths, worker processes, sampling and crop options."""
import dataclasses
from pathlib import Path
from typing import Literal

DEFAULTS_FILE = Path(__file__).with_name("data_config.yaml")


@dataclasses.dataclass
class DataConfig:
    train_img_dir: str = "data/coco/train2017"
    train_annotation_file: str = "data/coco/annotations/captions_train2017.json"
    num_workers: int = 4
    prefetch_factor: int = 2  # batches each worker prepares ahead; used only when num_workers > 0
    all_captions: bool = False  # every caption a sample; default: each image once per epoch, one caption drawn
    strict_images: bool = False  # raise on a missing/corrupt image instead of skipping it
    train_crop: Literal["random", "center"] = "random"
    random_crop_min_area: float = 0.9  # "random": a square of this to 1.0 times the largest square's area

    def __post_init__(self):
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 (load in the training process) or more, got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be at least 1, got {self.prefetch_factor}")
        if not 0.0 < self.random_crop_min_area <= 1.0:
            raise ValueError(f"random_crop_min_area must be in (0, 1], got {self.random_crop_min_area}")
