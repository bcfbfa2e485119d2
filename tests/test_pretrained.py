"""Released weights by name (model.pretrained): a file is found in each cache layout (ours, Hugging Face's, OpenAI's
clip package's) and loads with its weights; a file whose SHA-256 is wrong is one line and never read; with no cached
copy and no network, one line names the URL and where to put the file; a download is verified before it is kept;
`model.init_from: hf-hub:ORG/REPO` starts a training run. Nothing here touches the network."""
import hashlib
import io
import json
import urllib.error
import urllib.request

import pytest
import torch
from safetensors.torch import save_file

import model as model_package
import train
from model import load_model
from model.pretrained import PRETRAINED, Release
from test_init_from import command, openai_torchscript, small_open_clip
from training_runs import coco_dataset  # noqa: F401
from trainer.checkpointing import list_checkpoints
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

REPO = "laion/tiny-clip-test"
REVISION = "0123456789abcdef0123456789abcdef01234567"
OFFLINE = "[Errno -3] Temporary failure in name resolution"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def offline_machine(monkeypatch, tmp_path):
    """Every cache in tmp_path and empty; every network access fails as on a machine without network."""
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLIP_TOOLKIT_CACHE", str(tmp_path / "toolkit-cache"))
    for name in ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def openai_release(tmp_path, monkeypatch):
    """An OpenAI-style TorchScript file, and the ViT-B-32 openai table entry pointing at it with its SHA-256."""
    source = openai_torchscript(tmp_path / "ViT-B-32.pt")
    digest = sha256(source)
    release = Release(url=f"https://openaipublic.azureedge.net/clip/models/{digest}/ViT-B-32.pt", sha256=digest,
                      quick_gelu=True)
    monkeypatch.setitem(PRETRAINED["ViT-B-32"], "openai", release)
    return source


@pytest.fixture
def hub_release(tmp_path, monkeypatch):
    """An open_clip-style safetensors file as on the Hub, and a table entry naming its repository."""
    source = tmp_path / "open_clip_model.safetensors"
    save_file(small_open_clip(quick_gelu=False).state_dict(), str(source))
    monkeypatch.setitem(PRETRAINED["ViT-B-32"], "laion2b_s34b_b79k", Release(hf_hub=REPO, quick_gelu=False))
    return source


def put_in_huggingface_cache(hub_folder, source, blob_name=None, repo=REPO, open_clip_config=None):
    """The layout huggingface_hub writes: blobs/<SHA-256> (a small file's blob is named by its git hash instead),
    snapshots/<revision>/<file> linking to it, refs/main."""
    repo_folder = hub_folder / f"models--{repo.replace('/', '--')}"
    snapshot = repo_folder / "snapshots" / REVISION
    for name, data, blob_name in ((source.name, source.read_bytes(), blob_name or sha256(source)),
                                  ("open_clip_config.json", json.dumps(open_clip_config).encode(), "c" * 40)):
        if name == "open_clip_config.json" and open_clip_config is None:
            continue
        (repo_folder / "blobs").mkdir(parents=True, exist_ok=True)
        (repo_folder / "blobs" / blob_name).write_bytes(data)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(f"../../blobs/{blob_name}")
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(REVISION)


def has_weights_of(model, source_state_dict) -> bool:
    return all(torch.equal(value, source_state_dict[key]) for key, value in model.state_dict().items())


def openai_tensors():
    return small_open_clip(quick_gelu=True).state_dict()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("cache", ["toolkit-cache/weights", "home/.cache/clip"])
def test_openai_release_loads_from_each_url_cache(tmp_path, openai_release, cache):
    (tmp_path / cache).mkdir(parents=True)
    (tmp_path / cache / "ViT-B-32.pt").write_bytes(openai_release.read_bytes())
    for name in ("ViT-B-32", "ViT-B/32"):
        model, _ = load_model(name, pretrained="openai")
        assert model.config.quick_gelu and has_weights_of(model, openai_tensors())


@pytest.mark.parametrize("hub_cache", ["HF_HUB_CACHE", "HF_HOME", "home"])
def test_hub_release_loads_from_the_huggingface_cache(tmp_path, monkeypatch, hub_release, hub_cache):
    hub_folder = {"HF_HUB_CACHE": tmp_path / "hub-cache", "HF_HOME": tmp_path / "hf-home" / "hub",
                  "home": tmp_path / "home" / ".cache" / "huggingface" / "hub"}[hub_cache]
    if hub_cache != "home":
        monkeypatch.setenv(hub_cache, str(hub_folder.parent if hub_cache == "HF_HOME" else hub_folder))
    put_in_huggingface_cache(hub_folder, hub_release)
    for name, tag in (("ViT-B-32", "laion2b_s34b_b79k"), (f"hf-hub:{REPO}", None)):
        model, _ = load_model(name, pretrained=tag)
        assert not model.config.quick_gelu
        assert has_weights_of(model, small_open_clip(quick_gelu=False).state_dict())


def test_release_settings_the_shapes_cannot_tell_reach_the_model(tmp_path, monkeypatch, hub_release):
    monkeypatch.setitem(PRETRAINED["ViT-B-32"], "laion2b_s34b_b79k",
                        Release(hf_hub=REPO, quick_gelu=True, image_mean=[0.5] * 3, image_std=[0.5] * 3))
    put_in_huggingface_cache(tmp_path / "home" / ".cache" / "huggingface" / "hub", hub_release)
    model, _ = load_model(f"hf-hub:{REPO}")
    assert model.config.quick_gelu and model.config.image_mean == [0.5] * 3 and model.config.image_std == [0.5] * 3


def test_a_repository_beyond_the_table_follows_its_open_clip_config(tmp_path, hub_release):
    config = {"model_cfg": {"embed_dim": 64, "quick_gelu": True},
              "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    put_in_huggingface_cache(tmp_path / "home" / ".cache" / "huggingface" / "hub", hub_release, repo="apple/tiny-dfn",
                             open_clip_config=config)
    model, _ = load_model("hf-hub:apple/tiny-dfn")
    assert model.config.quick_gelu and model.config.image_mean == [0.5] * 3 and model.config.image_std == [0.25] * 3
    assert has_weights_of(model, small_open_clip(quick_gelu=False).state_dict())


@pytest.mark.filterwarnings("ignore")
def test_wrong_checksum_is_one_line_and_the_file_is_never_read(tmp_path, monkeypatch, openai_release):
    cached = tmp_path / "toolkit-cache" / "weights" / "ViT-B-32.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(openai_release.read_bytes() + b"\0")
    read = []
    monkeypatch.setattr(model_package, "read_weights", lambda path: read.append(path))
    with pytest.raises(UserError) as error:
        load_model("ViT-B-32", pretrained="openai")
    message = str(error.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{cached}: SHA-256 is {sha256(cached)}, ")
    assert f"expected {sha256(openai_release)}" in message and read == []


def test_huggingface_blob_that_does_not_match_its_name_is_refused(tmp_path, monkeypatch, hub_release):
    put_in_huggingface_cache(tmp_path / "home" / ".cache" / "huggingface" / "hub", hub_release, blob_name="0" * 64)
    read = []
    monkeypatch.setattr(model_package, "read_weights", lambda path: read.append(path))
    with pytest.raises(UserError, match=f"SHA-256 is {sha256(hub_release)}, expected {'0' * 64}: "):
        load_model(f"hf-hub:{REPO}")
    assert read == []


def test_no_cache_and_no_network_says_where_to_put_the_file(tmp_path, openai_release):
    with pytest.raises(UserError) as error:
        load_model("ViT-B-32", pretrained="openai")
    assert str(error.value) == (f"cannot download {PRETRAINED['ViT-B-32']['openai'].url} ({OFFLINE}) and no cache "
                                f"holds the file: put ViT-B-32.pt in {tmp_path / 'toolkit-cache' / 'weights'}")


def test_no_cache_and_no_network_for_a_hub_repository(tmp_path):
    with pytest.raises(UserError) as error:
        load_model(f"hf-hub:{REPO}")
    message = str(error.value)
    assert len(message.splitlines()) == 1 and message.startswith("cannot download https://huggingface.co/api/")
    folder = tmp_path / "toolkit-cache" / "weights" / "hf-hub" / REPO
    assert message.endswith(f"of https://huggingface.co/{REPO} in {folder}")


class Response(io.BytesIO):
    """What urlopen returns, served from memory."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def serve(monkeypatch, files: dict):
    served = []

    def urlopen(url, *args, **kwargs):
        served.append(url)
        return Response(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return served


@pytest.mark.filterwarnings("ignore")
def test_download_is_verified_kept_in_our_cache_and_used_offline_after(tmp_path, monkeypatch, openai_release):
    url = PRETRAINED["ViT-B-32"]["openai"].url
    served = serve(monkeypatch, {url: openai_release.read_bytes()})
    model, _ = load_model("ViT-B-32", pretrained="openai")
    assert served == [url] and has_weights_of(model, openai_tensors())
    kept = tmp_path / "toolkit-cache" / "weights" / "ViT-B-32.pt"
    assert sha256(kept) == sha256(openai_release)
    serve(monkeypatch, {})
    load_model("ViT-B-32", pretrained="openai")


def test_download_with_the_wrong_checksum_is_not_kept(tmp_path, monkeypatch, openai_release):
    serve(monkeypatch, {PRETRAINED["ViT-B-32"]["openai"].url: b"a page from a captive portal"})
    with pytest.raises(UserError, match=f"SHA-256 is {hashlib.sha256(b'a page from a captive portal').hexdigest()}"):
        load_model("ViT-B-32", pretrained="openai")
    weights = tmp_path / "toolkit-cache" / "weights"
    assert list(weights.iterdir()) == []


def test_hub_download_is_verified_against_the_hubs_sha256(tmp_path, monkeypatch, hub_release):
    listing = {"sha": REVISION, "siblings": [
        {"rfilename": "open_clip_config.json"},
        {"rfilename": "open_clip_pytorch_model.bin", "lfs": {"sha256": "0" * 64}},
        {"rfilename": "open_clip_model.safetensors", "lfs": {"sha256": sha256(hub_release)}}]}
    files_url = f"https://huggingface.co/{REPO}/resolve/{REVISION}"
    config = {"model_cfg": {"quick_gelu": True}, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    served = serve(monkeypatch, {f"https://huggingface.co/api/models/{REPO}?blobs=true": json.dumps(listing).encode(),
                                 f"{files_url}/open_clip_config.json": json.dumps(config).encode(),
                                 f"{files_url}/open_clip_model.safetensors": hub_release.read_bytes()})
    model, _ = load_model(f"hf-hub:{REPO}")
    assert served[-1] == f"{files_url}/open_clip_model.safetensors"
    assert has_weights_of(model, small_open_clip(quick_gelu=False).state_dict())
    assert not model.config.quick_gelu and model.config.image_std == [0.5] * 3  # the table's word wins over the file's
    kept = tmp_path / "toolkit-cache" / "weights" / "hf-hub" / REPO / "open_clip_model.safetensors"
    assert (kept.parent / "open_clip_model.safetensors.sha256").read_text().split()[0] == sha256(hub_release)
    assert json.loads((kept.parent / "open_clip_config.json").read_text()) == config
    kept.write_bytes(kept.read_bytes()[:-1])  # the copy damaged later: refused by the hash recorded beside it
    serve(monkeypatch, {})
    with pytest.raises(UserError, match=f"^{kept}: SHA-256 is "):
        load_model(f"hf-hub:{REPO}")


def test_every_openai_entry_carries_the_sha256_its_url_states():
    releases = {name: tags["openai"] for name, tags in PRETRAINED.items() if "openai" in tags}
    assert set(releases) == {"RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14",
                             "ViT-L-14-336"}
    for release in releases.values():
        assert release.url.split("/")[-2] == release.sha256 and release.quick_gelu


@pytest.mark.parametrize("name, tag, expected", [
    ("ViT-H-14", "openai", "no released weights for 'ViT-H-14' (known: RN50, "),
    ("ViT-B/32", "laion5b", "no 'laion5b' weights for ViT-B-32 (known: openai, "),
    ("hf-hub:laion", None, "hf-hub:laion: expected hf-hub:ORG/REPO"),
    (f"hf-hub:{REPO}", "openai", f"hf-hub:{REPO} names its weights itself: leave out pretrained='openai'"),
])
def test_unknown_names_are_one_line(name, tag, expected):
    with pytest.raises(UserError) as error:
        load_model(name, pretrained=tag)
    assert str(error.value).startswith(expected) and len(str(error.value).splitlines()) == 1


def test_init_from_a_hub_repository_starts_training(coco_dataset, tmp_path, monkeypatch, hub_release):
    put_in_huggingface_cache(tmp_path / "home" / ".cache" / "huggingface" / "hub", hub_release)
    started = {}
    real_train = train.train

    def train_and_keep_the_start(job, ctx, resume=None):
        started["model"] = {key: value.clone() for key, value in job.model.state_dict().items()}
        return real_train(job, ctx, resume)

    monkeypatch.setattr(train, "train", train_and_keep_the_start)
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from=hf-hub:{REPO}")) == 0
    source = small_open_clip(quick_gelu=False).state_dict()
    assert all(torch.equal(value, source[key]) for key, value in started["model"].items())
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["model_config"]["quick_gelu"] is False
