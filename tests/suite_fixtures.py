"""eval_suite.py's test helpers: tiny checkpoints that disagree, and its Markdown tables read back."""
import torch

from model import build_model, model_config_by_name
from utils.checkpoint import save_checkpoint_atomic


def random_checkpoint(path, seed):
    torch.manual_seed(seed)
    model = build_model(model_config_by_name("tiny-vit"))  # random ViTs disagree from image to image
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": vars(model.config)}, path)
    return path


def markdown_table(text: str, heading: str) -> dict[str, list[str]]:
    """{row name: cells} of the table under `## heading`, the header row under the key 'checkpoint'."""
    lines = text.split(f"## {heading}\n\n", 1)[1].splitlines()
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not cells[0].startswith("---"):
            rows[cells[0]] = cells[1:]
    return rows
