"""Class-name lists shipped with the project (data files in dataloader/eval/classnames/) and user class-name files."""
from functools import cache
from pathlib import Path

from utils.errors import UserError
from utils.text_files import read_text_lines

CLASSNAMES_DIR = Path(__file__).parent / "classnames"


def read_class_name_file(path: str | Path) -> list[str]:
    """A class-name file: one name per line, in label order."""
    names = read_text_lines(path)
    if not names:
        raise UserError(f"{path} holds no class names (expected one name per line)")
    return names


@cache
def imagenet_class_names() -> dict[str, str]:
    """The 1000 ImageNet classes, wnid -> CLIP-curated name, in sorted wnid (= label) order."""
    rows = [line.split("\t") for line in read_text_lines(CLASSNAMES_DIR / "imagenet.tsv")]
    return {wnid: name for wnid, name in rows}


def cifar100_class_names() -> list[str]:
    return read_text_lines(CLASSNAMES_DIR / "cifar100.txt")
