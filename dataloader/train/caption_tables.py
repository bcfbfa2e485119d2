"""Image-caption tables: CSV/TSV (a header row, then one image path and caption per row) and JSONL (one object
per line with the same keys), checked at the door. Rows naming the same image make one image with several
captions, as in COCO, so an epoch still shows each image once with one caption drawn."""
import contextlib
import csv
import json
import os
from pathlib import Path
from typing import Iterator

from dataloader.coco import CaptionedImages, existing_files
from utils.errors import UserError

DELIMITERS = (",", "\t", ";")
OPEN_CLIP_CAPTION_KEY = "title"  # accepted in place of the default "caption": open_clip's CSV default


def caption_keys(caption_key: str) -> tuple[str, ...]:
    """The column names a caption is looked for under, in order."""
    return (caption_key, OPEN_CLIP_CAPTION_KEY) if caption_key == "caption" else (caption_key,)


def read_csv_captions(path, image_dir: str | None, image_key: str, caption_key: str) -> CaptionedImages:
    """The captioned images of a CSV/TSV file whose delimiter (comma, tab or semicolon) is the one that splits the
    header into names including `image_key`."""
    path = _existing(path)
    return _group(csv_rows(path, image_key, caption_key), path, image_dir, image_key, caption_key)


def read_jsonl_captions(path, image_dir: str | None, image_key: str, caption_key: str) -> CaptionedImages:
    """The captioned images of a JSON-lines file: one object per line holding `image_key` and `caption_key`."""
    path = _existing(path)
    return _group(jsonl_rows(path, image_key, caption_key), path, image_dir, image_key, caption_key)


def csv_rows(path: Path, image_key: str, caption_key: str) -> list[tuple[int, str, str]]:
    """(line, image, caption) of every row of a CSV/TSV file, as written."""
    with _open_text(path) as file:
        header_line = file.readline()
        file.seek(0)
        delimiter = _delimiter(header_line)
        rows = csv.reader(file, delimiter=delimiter)
        header = [name.strip() for name in _next_row(rows, path)]
        image_column = _column(header, (image_key,), path, image_key, caption_key)
        caption_column = _column(header, caption_keys(caption_key), path, image_key, caption_key)
        pairs = []
        for row in _rows(rows, path):
            if len(row) != len(header):
                raise UserError(f"{path}, line {rows.line_num}: {len(row)} fields, the header has {len(header)} "
                                f"(separated by {delimiter!r}; quote fields that contain it)")
            pairs.append((rows.line_num, row[image_column], row[caption_column]))
    return pairs


def jsonl_rows(path: Path, image_key: str, caption_key: str) -> list[tuple[int, object, object]]:
    """(line, image, caption) of every object of a JSON-lines file, as written."""
    pairs = []
    with _open_text(path) as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise UserError(f"{path}, line {line_number}: a JSON {type(record).__name__}, expected an object "
                                f"with '{image_key}' and '{caption_key}'")
            caption = next((record[key] for key in caption_keys(caption_key) if key in record), None)
            if image_key not in record or caption is None:
                raise UserError(f"{path}, line {line_number}: keys found: {', '.join(record) or 'none'}; expected "
                                f"{_expected(image_key, caption_key)}")
            pairs.append((line_number, record[image_key], caption))
    return pairs


def table_captions(path, image_key: str, caption_key: str) -> list[str]:
    """Every caption of a CSV/TSV (.csv, .tsv) or JSONL table, row by row, images unread."""
    path = _existing(path)
    rows = (csv_rows if path.suffix.lower() in (".csv", ".tsv") else jsonl_rows)(path, image_key, caption_key)
    for line_number, _, caption in rows:
        _check_value(caption, caption_key, path, line_number)
    return [caption for _, _, caption in rows]


def _check_value(value, key: str, path: Path, line_number: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path}, line {line_number}: '{key}' is {value!r}, expected a non-empty string")


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"captions file not found: {path}")
    return path


@contextlib.contextmanager
def _open_text(path: Path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets often save a BOM
            yield file
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error})") from None


def _delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most names (comma when none splits it)."""
    return max(DELIMITERS, key=lambda delimiter: len(next(csv.reader([header_line], delimiter=delimiter), [])))


def _next_row(rows, path: Path) -> list[str]:
    row = next(_rows(rows, path), None)
    if row is None:
        raise UserError(f"{path}: empty file; expected a header row naming the image and caption columns")
    return row


def _rows(rows, path: Path) -> Iterator[list[str]]:
    try:
        for row in rows:
            if row:  # blank lines
                yield row
    except csv.Error as error:
        raise UserError(f"{path}, line {rows.line_num}: {error}") from None


def _column(header: list[str], names: tuple[str, ...], path: Path, image_key: str, caption_key: str) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise UserError(f"{path}: no '{names[0]}' column (columns found: {', '.join(header)}); expected "
                    f"{_expected(image_key, caption_key)} in the header row")


def _expected(image_key: str, caption_key: str) -> str:
    captions = " or ".join(f"'{key}'" for key in caption_keys(caption_key))
    return f"'{image_key}' and {captions} (set data.image_key / data.caption_key)"


def _group(pairs, path: Path, image_dir: str | None, image_key: str, caption_key: str) -> CaptionedImages:
    """(line, image, caption) triples as images with their captions, in order of first appearance; relative image
    paths are read from `image_dir`, else the table's folder."""
    base = Path(image_dir) if image_dir is not None else path.parent
    captions_by_path = {}
    for line_number, image, caption in pairs:
        for key, value in ((image_key, image), (caption_key, caption)):
            _check_value(value, key, path, line_number)
        captions_by_path.setdefault(os.path.join(base, image.strip()), []).append(caption)
    present = existing_files(list(captions_by_path))
    return CaptionedImages(
        image_paths=[image for image in captions_by_path if image in present],
        captions=[captions for image, captions in captions_by_path.items() if image in present],
        missing=[image for image in captions_by_path if image not in present],
    )
