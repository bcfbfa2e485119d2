"""webdataset tar shards as img2dataset and webdataset's ShardWriter write them: consecutive files KEY.jpg (or
.jpeg/.png/.webp) and KEY.txt (or a KEY.json holding the caption). Here: finding the shards a source names, their
sample counts, a check at the door, reading a shard's raw samples (webdataset's own opener and tar iterators:
local files and `pipe:` commands)."""
import json
import tarfile
from pathlib import Path
from typing import Iterator

from braceexpand import braceexpand
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_expander

from utils.errors import UserError

SHARD_SUFFIX = ".tar"
SOURCE_SEPARATOR = "::"
PIPE_PREFIX = "pipe:"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SIZES_FILE = "sizes.json"  # {shard file name: samples}, as dataloader.make_shards writes it
IMG2DATASET_STATS = "_stats.json"  # img2dataset's per-shard NAME_stats.json, with a "successes" count
CAPTIONS_KEY = "captions"  # in a sample's .json: all of its image's captions, as make_shards writes them


def is_shard_source(source: str) -> bool:
    """Whether a source's name says shards: a .tar, a brace pattern, a `pipe:` command or a `::`-joined list."""
    return (SOURCE_SEPARATOR in source or "{" in source or source.startswith(PIPE_PREFIX)
            or source.lower().endswith(SHARD_SUFFIX))


def list_shards(source: str) -> list[str]:
    """The shards a source names, in order: `::`-separated parts, each a brace pattern (data/{00000..00331}.tar),
    a file, a folder (its .tar files, sorted) or a `pipe:` command."""
    shards = []
    for part in source.split(SOURCE_SEPARATOR):
        for url in braceexpand(part.strip()):
            path = Path(url)
            if url.startswith(PIPE_PREFIX) or path.is_file():
                shards.append(url)
            elif path.is_dir():
                found = sorted(str(shard) for shard in path.glob(f"*{SHARD_SUFFIX}"))
                if not found:
                    raise UserError(f"{path}: no {SHARD_SUFFIX} shards in this folder")
                shards += found
            else:
                raise UserError(f"shard not found: {url}" + (f" (from the pattern {part})" if url != part else ""))
    return shards


def total_samples(shards: list[str]) -> int | None:
    """The shards' sample count from a sizes.json or img2dataset's NAME_stats.json beside each; None when a
    shard's count is nowhere to be found (e.g. a `pipe:` source)."""
    sizes_by_folder, total = {}, 0
    for shard in shards:
        if shard.startswith(PIPE_PREFIX):
            return None
        path = Path(shard)
        if path.parent not in sizes_by_folder:
            sizes_by_folder[path.parent] = _read_json_object(path.parent / SIZES_FILE)
        count = sizes_by_folder[path.parent].get(path.name)
        if count is None:
            count = _read_json_object(path.with_name(path.stem + IMG2DATASET_STATS)).get("successes")
        if not isinstance(count, int):
            return None
        total += count
    return total


def _read_json_object(path: Path) -> dict:
    """The JSON object in `path`; {} when there is no such file."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: a JSON {type(value).__name__}; expected an object of sample counts")
    return value


def check_shard(shard: str, caption_key: str) -> None:
    """The door's check of a local shard: a tar file whose first sample has an image and a caption (reads the
    first sample only, so that thousands of shards are checked in seconds)."""
    if shard.startswith(PIPE_PREFIX):
        return
    if Path(shard).stat().st_size == 0:
        raise UserError(f"{shard}: empty shard (0 bytes); expected a tar of KEY.jpg + KEY.txt samples")
    first = next(raw_samples(shard), None)
    if first is None:
        raise UserError(f"{shard}: empty shard (a tar with no samples); expected KEY.jpg + KEY.txt samples")
    image_and_captions(first, caption_key)


def raw_samples(shard: str) -> Iterator[dict]:
    """A shard's samples, undecoded: {"__key__", "__url__", extension: bytes ...}."""
    stream = gopen(shard)
    try:
        yield from group_by_keys(tar_file_expander([{"url": shard, "stream": stream}]))
    except tarfile.TarError as error:
        raise UserError(f"{shard}: not a readable tar file ({error.args[0] if error.args else error})") from None
    except ValueError as error:  # webdataset's grouping: a file name twice in one sample
        raise UserError(f"{shard}: {error.args[0]}") from None
    finally:
        _close(stream, shard)


def _close(stream, shard: str) -> None:
    try:
        stream.close()
    except OSError as error:  # webdataset's pipe raises here when the `pipe:` command failed
        raise UserError(f"{shard}: the command failed ({error})") from None


def image_and_captions(sample: dict, caption_key: str) -> tuple[bytes, list[str]]:
    """The encoded image and the captions of a raw sample: the .json's CAPTIONS_KEY list where there is one
    (make_shards keeps every caption of an image), else the .txt, else the .json's `caption_key`. A sample
    without an image or a caption is a UserError naming the shard and the key."""
    where = f"{sample['__url__']}: sample '{sample['__key__']}'"
    image = next((sample[extension] for extension in IMAGE_EXTENSIONS if extension in sample), None)
    if image is None:
        raise UserError(f"{where} has no image (expected one of {', '.join(IMAGE_EXTENSIONS)}; found "
                        f"{', '.join(_extensions(sample))})")
    metadata = _json_object(sample["json"]) if "json" in sample else {}
    if _is_caption_list(metadata.get(CAPTIONS_KEY)):
        return image, metadata[CAPTIONS_KEY]
    if "txt" in sample:
        return image, [sample["txt"].decode("utf-8", errors="replace")]
    if isinstance(metadata.get(caption_key), str):
        return image, [metadata[caption_key]]
    if "json" in sample:
        raise UserError(f"{where}: its .json has no '{caption_key}' string (data.caption_key) and there is no .txt")
    raise UserError(f"{where} has no caption (expected a .txt or a .json with '{caption_key}'; found "
                    f"{', '.join(_extensions(sample))})")


def _json_object(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _is_caption_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(caption, str) for caption in value)


def _extensions(sample: dict) -> list[str]:
    return [key for key in sample if not key.startswith("__")]
