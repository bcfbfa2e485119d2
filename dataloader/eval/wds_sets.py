"""Labelled sets in CLIP_benchmark's webdataset layout (its wds_* sets, e.g. on the Hugging Face Hub):

  DATA_DIR/classnames.txt                          one class name per line, in label order
  DATA_DIR/zeroshot_classification_templates.txt   one prompt per line, {c} where the class name goes (optional)
  DATA_DIR/dataset_type.txt                        optional; only "classification" sets are read here
  DATA_DIR/train/ and DATA_DIR/test/               nshards.txt (the shard count) and shards 0.tar, 1.tar, ...

A sample is the tar members sharing a key (a name up to the first dot of its file name, as webdataset groups them):
an image (.webp, .png, .jpg or .jpeg) and .cls, its label as text. The shards are indexed once, so that any sample
can be read by its position: the evaluation takes the images by index (a contiguous block per rank under torchrun),
as it takes a folder's files.
"""
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dataloader.eval.class_names import read_class_name_file
from utils.errors import UserError

CLASS_NAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
KIND_FILE = "dataset_type.txt"
SHARD_COUNT_FILE = "nshards.txt"
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference within a sample
LFS_POINTER = b"version https://git-lfs"  # what a clone without git-lfs holds in place of each shard


@dataclass(frozen=True)
class TarMember:
    """Where one file's bytes lie inside a tar file."""
    shard: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.shard, "rb") as file:
            file.seek(self.offset)
            return file.read(self.size)


@dataclass(frozen=True)
class WdsSample:
    name: str  # shard path and key: how a warning names the sample
    image: TarMember
    label: int


@dataclass(frozen=True)
class WdsSplit:
    class_names: list[str]
    templates_file: Path | None  # None: the set ships no templates
    samples: list[WdsSample]  # in shard order, then tar order


def read_wds_split(data_dir: Path, split: str) -> WdsSplit:
    """The class names, templates file and samples of `split` (train or test) of the set in `data_dir`."""
    if not data_dir.is_dir():
        raise UserError(f"data directory {data_dir} does not exist or is not a directory")
    check_classification(data_dir / KIND_FILE)
    names_file = data_dir / CLASS_NAMES_FILE
    if not names_file.is_file():
        raise UserError(f"{names_file} not found: a webdataset classification set lists its class names there, "
                        f"one per line in label order")
    class_names = read_class_name_file(names_file)
    samples = [sample for shard in shard_paths(data_dir, split) for sample in shard_samples(shard, names_file,
                                                                                             len(class_names))]
    if not samples:
        raise UserError(f"the shards of {data_dir / split} hold no samples")
    templates_file = data_dir / TEMPLATES_FILE
    return WdsSplit(class_names, templates_file if templates_file.is_file() else None, samples)


def check_classification(kind_file: Path) -> None:
    if kind_file.is_file():
        kind = kind_file.read_text(encoding="utf-8").strip().lower()
        if kind != "classification":
            raise UserError(f"{kind_file} says {kind!r}: --dataset_type wds reads classification sets only")


def shard_paths(data_dir: Path, split: str) -> list[Path]:
    """0.tar ... (n-1).tar of the split folder, n read from its nshards.txt; every one must be there."""
    split_dir = data_dir / split
    if not split_dir.is_dir():
        present = sorted(path.name for path in data_dir.iterdir() if (path / SHARD_COUNT_FILE).is_file())
        raise UserError(f"{data_dir} has no {split}/ split folder"
                        + (f" (it has: {', '.join(present)})" if present else " (nor any folder with nshards.txt)"))
    count_file = split_dir / SHARD_COUNT_FILE
    if not count_file.is_file():
        raise UserError(f"{count_file} not found: it holds the number of shards (0.tar, 1.tar ...) of {split_dir}")
    count = count_file.read_text(encoding="utf-8").strip()
    if not count.isdigit() or int(count) < 1:
        raise UserError(f"{count_file}: expected the number of shards, found {count!r}")
    paths = [split_dir / f"{number}.tar" for number in range(int(count))]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise UserError(f"{missing[0]} not found: {count_file} says {count} shard(s), "
                        f"{paths[0].name} ... {paths[-1].name}")
    return paths


def sample_key(member_name: str) -> tuple[str, str]:
    """(key, extension) of a member: 'a/s0000007.cls' -> ('a/s0000007', 'cls'); no extension: ('...', '')."""
    folder, slash, base = member_name.rpartition("/")
    stem, _, extension = base.partition(".")
    return folder + slash + stem, extension.lower()


def shard_samples(shard: Path, names_file: Path, num_classes: int) -> list[WdsSample]:
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(shard, "r:") as tar:
            for info in tar:
                key, extension = sample_key(info.name)
                if info.isfile() and extension:
                    members.setdefault(key, {})[extension] = info
            labels = {key: sample_label(tar, shard, key, files, names_file, num_classes)
                      for key, files in members.items()}
    except tarfile.TarError as error:
        with open(shard, "rb") as file:
            if file.read(len(LFS_POINTER)) == LFS_POINTER:
                raise UserError(f"{shard} is a Git LFS pointer, not the shard: fetch the shards (git lfs pull, or "
                                f"huggingface-cli download)") from None
        raise UserError(f"cannot read shard {shard}: {error}") from None
    return [WdsSample(f"{shard}:{key}", image_member(shard, key, files), labels[key]) for key, files in members.items()]


def sample_label(tar: tarfile.TarFile, shard: Path, key: str, files: dict[str, tarfile.TarInfo], names_file: Path,
                 num_classes: int) -> int:
    if "cls" not in files:
        raise UserError(f"{shard}: sample {key!r} has no .cls label (it holds: {', '.join(sorted(files))})")
    text = tar.extractfile(files["cls"]).read().decode("utf-8", "replace").strip()
    try:
        label = int(text)
    except ValueError:
        raise UserError(f"{shard}: sample {key!r} has the label {text!r}, not an integer") from None
    if not 0 <= label < num_classes:
        raise UserError(f"{shard}: sample {key!r} has the label {label}, outside the {num_classes} classes of "
                        f"{names_file} (0 ... {num_classes - 1})")
    return label


def image_member(shard: Path, key: str, files: dict[str, tarfile.TarInfo]) -> TarMember:
    extension = next((extension for extension in IMAGE_EXTENSIONS if extension in files), None)
    if extension is None:
        raise UserError(f"{shard}: sample {key!r} has no image ({', '.join(IMAGE_EXTENSIONS)}; it holds: "
                        f"{', '.join(sorted(files))})")
    return TarMember(str(shard), files[extension].offset_data, files[extension].size)
