"""Labelled image sets for zero-shot evaluation: one reader per on-disk layout, behind one registry (READERS)."""
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from dataloader.eval.class_names import imagenet_class_names, read_class_name_file
from dataloader.eval.wds_sets import WdsSample, read_wds_split
from dataloader.image_io import UNREADABLE_IMAGE_ERRORS, load_rgb_image
from utils.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

Transform = Callable  # PIL.Image -> FloatTensor [3, H, W]


@dataclass(frozen=True)
class EvalSet:
    name: str  # names the result files
    class_names: list[str]  # label -> name used in the prompts
    dataset: Dataset  # yields (image tensor, label) or UnreadableImage
    default_templates: str  # a template set in evaluation/templates/, or a template file


@dataclass(frozen=True)
class UnreadableImage:
    path: str
    reason: str


class Batch(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    unreadable: list[UnreadableImage]


def collate_readable(samples: list) -> Batch:
    """Stack the readable samples; keep the unreadable ones aside so that the caller can count and report them."""
    readable = [sample for sample in samples if not isinstance(sample, UnreadableImage)]
    unreadable = [sample for sample in samples if isinstance(sample, UnreadableImage)]
    if not readable:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), unreadable)
    images, labels = zip(*readable)
    return Batch(torch.stack(images), torch.tensor(labels, dtype=torch.long), unreadable)


class ImageFiles(Dataset):
    def __init__(self, paths: list[Path], labels: list[int], transform: Transform, min_side: int | None):
        self.paths, self.labels, self.transform, self.min_side = paths, labels, transform, min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        return decoded(path, str(path), self.labels[index], self.transform, self.min_side)


class TarImages(Dataset):
    """Images inside tar shards, read by index (dataloader.eval.wds_sets indexes them)."""

    def __init__(self, samples: list[WdsSample], transform: Transform, min_side: int | None):
        self.samples, self.transform, self.min_side = samples, transform, min_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        return decoded(io.BytesIO(sample.image.read()), sample.name, sample.label, self.transform, self.min_side)


def decoded(source, name: str, label: int, transform: Transform, min_side: int | None):
    """(image tensor, label) of an image file or bytes stream, or UnreadableImage naming it."""
    try:
        image = load_rgb_image(source, min_side)
    except UNREADABLE_IMAGE_ERRORS as error:
        return UnreadableImage(name, str(error) or type(error).__name__)
    return transform(image), label


class ImageArrays(Dataset):
    """Images held in memory as uint8 [N, H, W, 3] (CIFAR)."""

    def __init__(self, images: np.ndarray, labels: list[int], transform: Transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


# ---- CIFAR: the python-pickle batches that torchvision downloads and reads ----

@dataclass(frozen=True)
class CifarLayout:
    display_name: str
    folder: str
    test_file: str
    train_files: tuple[str, ...]
    meta_file: str
    names_key: str
    labels_key: str
    torchvision_class: type


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout("CIFAR10", "cifar-10-batches-py", "test_batch",
                           tuple(f"data_batch_{number}" for number in range(1, 6)), "batches.meta", "label_names",
                           "labels", tv_datasets.CIFAR10),
    "cifar100": CifarLayout("CIFAR100", "cifar-100-python", "test", ("train",), "meta", "fine_label_names",
                            "fine_labels", tv_datasets.CIFAR100),
}


def cifar_variant(data_dir: Path) -> str:
    """cifar10 or cifar100, decided by the folder's contents (the batch folder torchvision unpacks), else by its
    name (data/CIFAR100, cifar-10 ...); a folder that could be either is an error, never a silent CIFAR-10."""
    present = [key for key, layout in CIFAR_LAYOUTS.items()
               if data_dir.name == layout.folder or (data_dir / layout.folder).is_dir()]
    if len(present) == 1:
        return present[0]
    if not present:
        compact = "".join(character for character in data_dir.name.lower() if character.isalnum())
        named = [key for key in sorted(CIFAR_LAYOUTS, key=len, reverse=True) if key in compact]
        if named:
            return named[0]  # the longest match: "cifar100" also contains "cifar10"
    found = f"holds both {' and '.join(CIFAR_LAYOUTS[key].folder for key in present)}" if present else \
        f"holds neither {' nor '.join(layout.folder for layout in CIFAR_LAYOUTS.values())} and its name does not say"
    raise UserError(f"{data_dir} {found}: pass --dataset cifar10 or --dataset cifar100")


def read_cifar(data_dir: Path, dataset_name: str | None, transform: Transform, min_side: int | None,
               split: str = "test") -> EvalSet:
    key = (dataset_name or cifar_variant(data_dir)).lower()
    if key not in CIFAR_LAYOUTS:
        raise UserError(f"--dataset {dataset_name!r} is not a CIFAR set: expected one of {', '.join(CIFAR_LAYOUTS)}")
    layout = CIFAR_LAYOUTS[key]
    folder = data_dir if data_dir.name == layout.folder else data_dir / layout.folder
    files = [folder / name for name in (layout.train_files if split == "train" else (layout.test_file,))]
    missing = [path for path in files if not path.is_file()]
    if missing:
        download_cifar(layout, data_dir, split, missing[0])
    meta = unpickle(folder / layout.meta_file)
    class_names = [name.replace("_", " ") for name in require_key(meta, layout.names_key, folder / layout.meta_file)]
    labels, pixels = [], []
    for path in files:
        batch = unpickle(path)
        batch_labels = [int(label) for label in require_key(batch, layout.labels_key, path)]
        batch_pixels = np.asarray(require_key(batch, "data", path), dtype=np.uint8)
        if batch_pixels.ndim != 2 or batch_pixels.shape[1] != 3 * 32 * 32 or len(batch_pixels) != len(batch_labels):
            raise UserError(f"{path}: expected 'data' of shape [N, 3072] and N labels, "
                            f"found data {batch_pixels.shape} and {len(batch_labels)} labels")
        if batch_labels and not 0 <= min(batch_labels) <= max(batch_labels) < len(class_names):
            raise UserError(f"{path}: labels must lie in 0..{len(class_names) - 1}")
        labels += batch_labels
        pixels.append(batch_pixels)
    images = np.concatenate(pixels).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are channel-planar
    return EvalSet(layout.display_name, class_names, ImageArrays(images, labels, transform), "cifar")


def download_cifar(layout: CifarLayout, data_dir: Path, split: str, missing: Path) -> None:
    try:
        layout.torchvision_class(root=str(data_dir), train=split == "train", download=True)
    except Exception as error:  # offline, proxy, disk full...: whatever stops the download, say so in one line
        raise UserError(f"{missing} not found, and downloading "
                        f"{layout.display_name} into {data_dir} failed ({type(error).__name__}: {error})") from None


def unpickle(path: Path) -> dict:
    # CIFAR ships as Python 2 pickles; latin1 reads their byte strings as str (as torchvision does).
    try:
        with open(path, "rb") as file:
            content = pickle.load(file, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise UserError(f"cannot read CIFAR file {path}: {error}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a pickled dict, found {type(content).__name__}")
    return content


def require_key(content: dict, key: str, path: Path):
    if key not in content:
        raise UserError(f"{path}: missing key {key!r} (found: {', '.join(map(str, content))})")
    return content[key]


# ---- class-per-folder layouts ----

def class_folders(data_dir: Path) -> list[Path]:
    if not data_dir.is_dir():
        raise UserError(f"data directory {data_dir} does not exist or is not a directory")
    folders = sorted(path for path in data_dir.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise UserError(f"{data_dir} has no class folders (expected one sub-folder of images per class)")
    return folders


def image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def files_per_class(data_dir: Path, folders: list[Path], transform: Transform, min_side: int | None) -> ImageFiles:
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = image_files(folder)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders of {data_dir}")
    return ImageFiles(paths, labels, transform, min_side)


def read_imagenet_family(data_dir: Path, dataset_name: str | None, transform: Transform,
                         min_side: int | None) -> EvalSet:
    """ImageNet val, -Sketch, -A, -R (wnid folders) and ImageNetV2 (folders 0..999 = ImageNet label index).
    The classes are those whose folders are present: ImageNet-A and -R hold 200-class subsets."""
    folders = class_folders(data_dir)
    names_by_wnid = imagenet_class_names()
    if all(folder.name in names_by_wnid for folder in folders):
        class_names = [names_by_wnid[folder.name] for folder in folders]
    elif all(folder.name.isdigit() and int(folder.name) < len(names_by_wnid) for folder in folders):
        # Sort by number: as strings "10" would come before "2" and every label would shift.
        folders.sort(key=lambda folder: int(folder.name))
        names_in_label_order = list(names_by_wnid.values())
        class_names = [names_in_label_order[int(folder.name)] for folder in folders]
    else:
        odd = next(f.name for f in folders if f.name not in names_by_wnid and not f.name.isdigit())
        raise UserError(f"{data_dir}: folder {odd!r} is neither an ImageNet wnid (n01440764 ...) nor an "
                        f"ImageNetV2 class index (0 ... 999)")
    dataset = files_per_class(data_dir, folders, transform, min_side)
    return EvalSet(dataset_name or data_dir.name, class_names, dataset, "imagenet")


def read_class_folders(data_dir: Path, dataset_name: str | None, transform: Transform,
                       min_side: int | None) -> EvalSet:
    """Any class-per-folder set (Office-Home, PACS, DomainNet, VLCS ...): folder names are the class names."""
    folders = class_folders(data_dir)
    class_names = [folder.name.replace("_", " ") for folder in folders]
    dataset = files_per_class(data_dir, folders, transform, min_side)
    return EvalSet(dataset_name or data_dir.name, class_names, dataset, "imagenet")


def read_wds(data_dir: Path, dataset_name: str | None, transform: Transform, min_side: int | None,
             split: str = "test") -> EvalSet:
    """CLIP_benchmark's webdataset layout (dataloader/eval/wds_sets.py): its templates file, when it ships one, is
    the default template set."""
    wds_split = read_wds_split(data_dir, split)
    templates = str(wds_split.templates_file) if wds_split.templates_file else "imagenet"
    return EvalSet(dataset_name or data_dir.name, wds_split.class_names,
                   TarImages(wds_split.samples, transform, min_side), templates)


READERS = {
    "cifar": read_cifar,
    "imagenet": read_imagenet_family,
    "folder": read_class_folders,
    "wds": read_wds,
}

# The types whose folder holds several splits; the others are one split each.
SPLITS = {"cifar": ("train", "test"), "wds": ("train", "test")}


def read_eval_set(dataset_type: str, data_dir: str | Path, transform: Transform, *, dataset_name: str | None = None,
                  min_side: int | None = None, class_names_file: str | Path | None = None,
                  split: str | None = None) -> EvalSet:
    """Read an evaluation set. `min_side` lets JPEGs decode at reduced size (the model's input size);
    `class_names_file` replaces the class names (one per line, in label order: sorted folder order for folders);
    `split` picks a split of the sets that keep several in one folder (SPLITS; default: their test split)."""
    if dataset_type not in READERS:
        raise UserError(f"dataset type {dataset_type!r} is not one of: {', '.join(READERS)}")
    if split is not None and split not in SPLITS.get(dataset_type, ()):
        raise UserError(f"dataset type {dataset_type!r} has no split {split!r}: "
                        + (f"expected one of {', '.join(SPLITS[dataset_type])}" if dataset_type in SPLITS
                           else "its folder is one split; point the data folder at the split you want"))
    split_choice = {} if split is None else {"split": split}
    eval_set = READERS[dataset_type](Path(data_dir), dataset_name, transform, min_side, **split_choice)
    if class_names_file is None:
        return eval_set
    names = read_class_name_file(class_names_file)
    if len(names) != len(eval_set.class_names):
        raise UserError(f"{class_names_file} has {len(names)} class names but {data_dir} has "
                        f"{len(eval_set.class_names)} classes")
    return EvalSet(eval_set.name, names, eval_set.dataset, eval_set.default_templates)
