"""What a training run evaluates while it trains, and when; defaults in evaluation/eval_config.yaml."""
import dataclasses
from pathlib import Path
from typing import Literal

from dataloader.eval.caption_sets import CaptionFormat
from dataloader.eval.eval_datasets import READERS

DEFAULTS_FILE = Path(__file__).with_name("eval_config.yaml")


@dataclasses.dataclass
class ZeroShotTask:
    """Zero-shot accuracy on anything zeroshot_eval.py reads: <name>/top1, top5, mean_per_class_recall (%)."""
    kind: Literal["zeroshot"]
    name: str
    data_dir: str
    dataset_type: Literal[tuple(sorted(READERS))] = "folder"
    dataset: str | None = None  # cifar10 | cifar100 for CIFAR
    classnames: str | None = None  # one class name per line, in label order
    templates: str | None = None  # a template set, a file or one template (default: the dataset's set)
    report_dir: str | None = None  # also write <name>.txt/.json/.png here (per class), rewritten at each evaluation


@dataclasses.dataclass(kw_only=True)
class CaptionSetTask:
    """Captioned images in any format retrieval_eval.py reads (dataloader.eval.caption_sets)."""
    annotation_file: str  # COCO captions / Karpathy split JSON, CSV/TSV, JSONL, or webdataset shards
    image_dir: str | None = None  # the images; needed for COCO, default the table's folder for CSV/JSONL
    format: CaptionFormat = "auto"  # as training's data.format: auto tells it from the name
    image_key: str = "filepath"  # CSV column / JSONL key of the image path
    caption_key: str = "caption"  # CSV column / JSONL key (or shards' .json key) of the caption


@dataclasses.dataclass(kw_only=True)
class RetrievalTask(CaptionSetTask):
    """Image-text recall on captioned images: <name>/image_to_text_r1 ... text_to_image_r10 (%)."""
    kind: Literal["retrieval"]
    name: str


@dataclasses.dataclass(kw_only=True)
class LossTask(CaptionSetTask):
    """The contrastive loss on held-out captioned images, at the training's global batch: <name>/loss."""
    kind: Literal["loss"]
    name: str


@dataclasses.dataclass
class EvalConfig:
    every_steps: int | None = None  # neither: the tasks score the final weights only (and step 0 with at_start)
    every_epochs: int | None = None
    at_start: bool = False  # score the starting weights (step 0) too
    batch_size: int = 128  # images per batch for zeroshot and retrieval (loss uses the training batch)
    num_workers: int = 0  # image decoding processes per evaluation
    tasks: list[ZeroShotTask | RetrievalTask | LossTask] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        for key in ("every_steps", "every_epochs"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"eval.{key} must be at least 1 (or null), got {getattr(self, key)}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("eval.batch_size must be at least 1 and eval.num_workers at least 0")
        names = [task.name for task in self.tasks]
        if len(set(names)) < len(names):
            raise ValueError(f"eval.tasks: each task needs its own name, got {', '.join(names)}")
