"""Where cached files live: our own folder, and those of the libraries whose downloads we can use as they are."""
import os
from pathlib import Path


def user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def toolkit_cache() -> Path:
    """Ours: CLIP_TOOLKIT_CACHE, else ~/.cache/clip-toolkit."""
    return Path(os.environ.get("CLIP_TOOLKIT_CACHE") or user_cache() / "clip-toolkit")


def huggingface_hub_cache() -> Path:
    """Where huggingface_hub keeps its downloads (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME") or user_cache() / "huggingface") / "hub"


def openai_clip_cache() -> Path:
    """OpenAI's clip package (and open_clip for URL downloads) keep released files here, named as in their URL."""
    return Path.home() / ".cache" / "clip"
