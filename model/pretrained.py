"""Released CLIP weights by name: `load_model("ViT-B-32", pretrained="openai")` or `hf-hub:ORG/REPO`. The table in
pretrained.yaml says where each file is. A copy in a local cache comes first (ours, then Hugging Face's, then OpenAI's
clip package's), so a machine without network works once the file is cached; otherwise the file is downloaded to our
cache. A file whose SHA-256 is known is verified before it is read: a mismatch is refused, never loaded."""
import dataclasses
import json
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from utils.atomic_files import write_text_atomically
from utils.cache_folders import huggingface_hub_cache, openai_clip_cache, toolkit_cache
from utils.checkpoint import checksum_path, sha256_of_file
from utils.config import build, read_yaml
from utils.download import ChecksumMismatch, DownloadFailed, download_verified, fetch_json
from utils.errors import UserError

HF_HUB_PREFIX = "hf-hub:"
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's names, preferred first
HF_CONFIG_FILE = "open_clip_config.json"
TABLE_FILE = Path(__file__).with_name("pretrained.yaml")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclasses.dataclass(frozen=True)
class Release:
    """Where one released file is, and the ModelConfig fields its tensor shapes cannot tell."""
    url: str | None = None
    sha256: str | None = None  # of the file at `url`, as its publisher states it
    hf_hub: str | None = None  # ORG/REPO holding one of HF_WEIGHT_FILES
    quick_gelu: bool | None = None  # None: as the file's format implies (model.load_model)
    image_mean: list[float] | None = None
    image_std: list[float] | None = None

    def __post_init__(self):
        if not (self.url or self.hf_hub):
            raise ValueError("a release needs a url or an hf_hub repository")
        if self.url and not (self.sha256 and _SHA256.fullmatch(self.sha256)):
            raise ValueError(f"{self.url}: a url needs the 64-digit sha256 its publisher states, got {self.sha256}")
        if self.hf_hub and not _REPO_ID.fullmatch(self.hf_hub):
            raise ValueError(f"hf_hub must be ORG/REPO, got {self.hf_hub!r}")

    @property
    def settings(self) -> dict:
        return {name: value for name in ("quick_gelu", "image_mean", "image_std")
                if (value := getattr(self, name)) is not None}


PRETRAINED: dict[str, dict[str, Release]] = {
    architecture: {tag: build(Release, entry, str(TABLE_FILE), f"{architecture}.{tag}.")
                   for tag, entry in tags.items()}
    for architecture, tags in read_yaml(TABLE_FILE).items()}


def is_hf_hub_name(name) -> bool:
    return str(name).startswith(HF_HUB_PREFIX)


def pretrained_file(name: str, tag: str | None = None) -> tuple[Path, dict]:
    """(the local, verified file of `name` + `tag`, or of an `hf-hub:ORG/REPO` name; the ModelConfig fields its
    release states), from a cache when one holds it, else downloaded to ours."""
    release = _hub_release(name, tag) if is_hf_hub_name(name) else _named_release(name, tag)
    copies = _cached_copies(release)
    path = _verified(*copies[0]) if copies else _download(release)
    return path, {**(_settings_beside(path, release.hf_hub) if release.hf_hub else {}), **release.settings}


def _settings_beside(path: Path, repo: str) -> dict:
    """What open_clip's Hub export states beside its weights in open_clip_config.json: the activation (its
    `model_cfg` names quick_gelu only where it is used) and the image normalisation (`preprocess_cfg`)."""
    config_file = path.with_name(HF_CONFIG_FILE)
    if not config_file.is_file():
        return {}
    try:
        config = json.loads(config_file.read_text())
        model_cfg, preprocess_cfg = config.get("model_cfg") or {}, config.get("preprocess_cfg") or {}
        stated = {"quick_gelu": model_cfg.get("quick_gelu", False), "image_mean": preprocess_cfg.get("mean"),
                  "image_std": preprocess_cfg.get("std")}
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"{config_file}: not an open_clip config ({error})") from None
    return build(Release, {"hf_hub": repo, **stated}, str(config_file)).settings


def _named_release(name: str, tag: str | None) -> Release:
    architecture = name.replace("/", "-").replace("@", "-")  # our ViT-L/14@336 is open_clip's ViT-L-14-336
    if architecture not in PRETRAINED:
        raise UserError(f"no released weights for '{name}' (known: {', '.join(PRETRAINED)}); weights on the Hugging "
                        f"Face Hub load as {HF_HUB_PREFIX}ORG/REPO")
    if tag not in PRETRAINED[architecture]:
        raise UserError(f"no '{tag}' weights for {architecture} (known: {', '.join(PRETRAINED[architecture])})")
    return PRETRAINED[architecture][tag]


def _hub_release(name: str, tag: str | None) -> Release:
    repo = name[len(HF_HUB_PREFIX):]
    if tag is not None:
        raise UserError(f"{name} names its weights itself: leave out pretrained={tag!r}")
    if not _REPO_ID.fullmatch(repo):
        raise UserError(f"{name}: expected {HF_HUB_PREFIX}ORG/REPO")
    known = [release for tags in PRETRAINED.values() for release in tags.values() if release.hf_hub == repo]
    return known[0] if known else Release(hf_hub=repo)


def weights_folder() -> Path:
    return toolkit_cache() / "weights"


def _url_file_name(url: str) -> str:
    return Path(urlparse(url).path).name


def _our_hub_folder(repo: str) -> Path:
    return weights_folder() / "hf-hub" / repo


def _cached_copies(release: Release) -> list[tuple[Path, str | None]]:
    """(file, the SHA-256 it must have where known) of each cached copy, in the order they are preferred."""
    ours, huggingface, openai_clip = [], [], []
    if release.url:
        ours.append((weights_folder() / _url_file_name(release.url), release.sha256))
        openai_clip.append((openai_clip_cache() / _url_file_name(release.url), release.sha256))
    if release.hf_hub:
        for name in HF_WEIGHT_FILES:
            ours.append((_our_hub_folder(release.hf_hub) / name, None))
            huggingface.append((_huggingface_snapshot(release.hf_hub) / name, None))
    return [(path, sha256 or _recorded_sha256(path)) for path, sha256 in ours + huggingface + openai_clip
            if path.is_file()]


def _huggingface_snapshot(repo: str) -> Path:
    """The folder huggingface_hub fills for the repository's main revision: files there link to blobs/SHA256."""
    folder = huggingface_hub_cache() / f"models--{repo.replace('/', '--')}"
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return folder / "snapshots" / "main"  # not cached: a folder that does not exist
    return folder / "snapshots" / revision


def _recorded_sha256(path: Path) -> str | None:
    """The SHA-256 a cache records for its file: huggingface_hub names an LFS blob by it, and our downloads keep it
    in <file>.sha256. None for a file placed by hand: it is used as it is."""
    blob_name = path.resolve().name
    if _SHA256.fullmatch(blob_name):
        return blob_name
    recorded = checksum_path(path)
    return recorded.read_text().split()[0] if recorded.is_file() else None


def _verified(path: Path, sha256: str | None) -> Path:
    if sha256 is not None and (actual := sha256_of_file(path)) != sha256:
        raise ChecksumMismatch(str(path), sha256, actual, remedy="delete it to download it again")
    return path


def _download(release: Release) -> Path:
    """Download to our cache (the URL where there is one, else from the Hub), or say where to put the file."""
    try:
        if release.url:
            return download_verified(release.url, weights_folder() / _url_file_name(release.url), release.sha256)
        return _download_from_hub(release.hf_hub)
    except DownloadFailed as error:
        raise UserError(f"{error} and no cache holds the file: put {_where_to_put(release)}") from None


def _where_to_put(release: Release) -> str:
    if release.url:
        return f"{_url_file_name(release.url)} in {weights_folder()}"
    return (f"{' or '.join(HF_WEIGHT_FILES)} of {_hub_endpoint()}/{release.hf_hub} in "
            f"{_our_hub_folder(release.hf_hub)}")


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _download_from_hub(repo: str) -> Path:
    """The first of HF_WEIGHT_FILES the repository holds, at its current revision, verified against the SHA-256 the
    Hub lists for that file."""
    info = fetch_json(f"{_hub_endpoint()}/api/models/{repo}?blobs=true")
    files = {entry.get("rfilename"): entry for entry in info.get("siblings") or []}
    name = next((name for name in HF_WEIGHT_FILES if name in files), None)
    if name is None:
        raise UserError(f"{HF_HUB_PREFIX}{repo}: the repository holds none of open_clip's weight files "
                        f"({', '.join(HF_WEIGHT_FILES)})")
    sha256 = (files[name].get("lfs") or {}).get("sha256")
    if not sha256:
        raise UserError(f"{HF_HUB_PREFIX}{repo}: the Hub lists no SHA-256 for {name}, so it cannot be verified")
    files_url = f"{_hub_endpoint()}/{repo}/resolve/{info.get('sha') or 'main'}"
    if HF_CONFIG_FILE in files:
        config = fetch_json(f"{files_url}/{HF_CONFIG_FILE}")
        write_text_atomically(_our_hub_folder(repo) / HF_CONFIG_FILE, json.dumps(config, indent=1))
    return download_verified(f"{files_url}/{name}", _our_hub_folder(repo) / name, sha256)
