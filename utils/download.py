"""Files fetched over HTTP(S): streamed to disk with a progress bar and hashed on the way; a file is put in place only
whole and with the SHA-256 it should have (utils.atomic_files), so a torn or wrong download is never used."""
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from utils.atomic_files import write_atomically, write_text_atomically
from utils.checkpoint import checksum_path
from utils.errors import UserError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


class DownloadFailed(UserError):
    """The network could not deliver `url` (offline, refused, not found); `reason` is the network's own words."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot download {url} ({reason})")
        self.url, self.reason = url, reason


class ChecksumMismatch(UserError):
    def __init__(self, name: str, expected: str, actual: str, remedy: str | None = None):
        super().__init__(f"{name}: SHA-256 is {actual}, expected {expected}: the file is damaged or not this "
                         f"release, so it is not used" + (f"; {remedy}" if remedy else ""))


def open_url(url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError) as error:
        raise DownloadFailed(url, _reason(error)) from None


def fetch_json(url: str):
    with open_url(url) as response:
        try:
            return json.loads(_read(response, url, response.read))
        except ValueError as error:
            raise DownloadFailed(url, f"not JSON: {error}") from None


def download_verified(url: str, path, sha256: str) -> Path:
    """Download `url` to `path`, in place only if its SHA-256 is `sha256`; the hash also goes beside it as
    <path>.sha256 (utils.checkpoint's convention), so later readers can verify the file without a table."""
    path = Path(path)

    def write(file):
        digest = hashlib.sha256()
        with open_url(url) as response, tqdm(total=int(response.headers.get("Content-Length") or 0) or None,
                                             unit="B", unit_scale=True, desc=path.name) as progress:
            while chunk := _read(response, url, lambda: response.read(CHUNK_BYTES)):
                digest.update(chunk)
                file.write(chunk)
                progress.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise ChecksumMismatch(url, sha256, digest.hexdigest())
        write_text_atomically(checksum_path(path), f"{sha256}  {path.name}\n")

    write_atomically(path, write)
    return path


def _read(response, url: str, read):
    try:
        return read()
    except OSError as error:  # a connection lost half-way is the network's failure, not the disk's
        raise DownloadFailed(url, _reason(error)) from None


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return str(error)  # "HTTP Error 404: Not Found"
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
    return str(reason).splitlines()[0] if str(reason) else type(error).__name__
