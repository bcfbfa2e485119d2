"""Images paired with one caption each, for the similarity-matrix figure: a tab-separated file of
`file name<TAB>caption` lines (file names relative to the image folder), or any captions JSON that
retrieval_eval.py reads (COCO captions, Karpathy split files), taking each image's first caption."""
from pathlib import Path

from dataloader.eval.karpathy import read_retrieval_captions
from utils.errors import UserError


def read_caption_pairs(captions_file, image_dir, limit: int) -> list[tuple[Path, str]]:
    """Up to `limit` (image path, caption) pairs, in the file's order."""
    captions_file, image_dir = Path(captions_file), Path(image_dir)
    if captions_file.suffix.lower() == ".json":
        captioned = read_retrieval_captions(captions_file, image_dir)
        pairs = [(Path(path), captions[0]) for path, captions in zip(captioned.image_paths, captioned.captions)]
    else:
        pairs = tab_separated_pairs(captions_file, image_dir)
    if not pairs:
        raise UserError(f"{captions_file}: no captioned image found in {image_dir}")
    return pairs[:limit]


def tab_separated_pairs(captions_file: Path, image_dir: Path) -> list[tuple[Path, str]]:
    if not captions_file.is_file():
        raise UserError(f"captions file not found: {captions_file}")
    pairs = []
    for number, line in enumerate(captions_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, tab, caption = line.partition("\t")
        if not tab or not name.strip() or not caption.strip():
            raise UserError(f"{captions_file}:{number}: expected 'file name<TAB>caption', got {line!r}")
        path = image_dir / name.strip()
        if not path.is_file():
            raise UserError(f"{captions_file}:{number}: image {path} not found")
        pairs.append((path, caption.strip()))
    return pairs
