"""A checkpoint is data: loading one never runs code, and a bad file is one clear error."""
import os
import pickle
import zipfile

import pytest
import torch

from model import build_model, load_model, model_config_by_name
from model.weights import export_safetensors
from utils.checkpoint import save_checkpoint_atomic
from utils.errors import UserError


class WritesAFileWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": WritesAFileWhenUnpickled(marker), "model_config": {}}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="could run code"):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_torchscript_archive_with_code_in_its_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(WritesAFileWhenUnpickled(marker), protocol=2)
    with zipfile.ZipFile(tmp_path / "evil_jit.pt", "w") as archive:
        archive.writestr("evil_jit/data.pkl", payload)
        archive.writestr("evil_jit/constants.pkl", pickle.dumps(()))
    with pytest.raises(UserError, match="refused 'posix.system'|refused 'os.system'"):
        load_model(tmp_path / "evil_jit.pt")
    assert not marker.exists()


def test_our_checkpoint_carries_its_config(tmp_path):
    model = build_model(model_config_by_name("tiny-vit"))
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": vars(model.config)}, tmp_path / "c.pt")
    loaded, preprocess = load_model(tmp_path / "c.pt")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_safetensors_export_loads_on_its_own(tmp_path):
    model = build_model(model_config_by_name("tiny"))
    export_safetensors(model, tmp_path / "tiny.safetensors")
    loaded, _ = load_model(tmp_path / "tiny.safetensors")
    assert loaded.config == model.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_architecture_mismatch_names_the_keys(tmp_path):
    state_dict = build_model(model_config_by_name("tiny")).state_dict()
    state_dict["transformer.resblocks.0.mlp.c_fc.weight"] = torch.zeros(3, 3)
    del state_dict["ln_final.bias"]
    torch.save({"model": state_dict, "model_config": vars(model_config_by_name("tiny"))}, tmp_path / "bad.pt")
    with pytest.raises(UserError) as error:
        load_model(tmp_path / "bad.pt")
    message = str(error.value)
    assert "\n" not in message and "bad.pt" in message
    assert "missing (1): ln_final.bias" in message and "mis-shaped (1): transformer.resblocks.0.mlp.c_fc" in message


@pytest.mark.parametrize("content, expected", [
    (b"", "not a readable PyTorch checkpoint"),
    (b"this is not a checkpoint at all", "checkpoint|pickle"),
    (b"\xff\xd8\xff\xe0 a JPEG", r"x\.pt: not a readable PyTorch checkpoint \(neither a zip archive nor a pickle"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, content, expected):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(UserError, match=expected):
        load_model(tmp_path / "x.pt")


def test_a_state_dict_of_something_else_is_not_clip(tmp_path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(UserError, match="not a CLIP checkpoint: missing positional_embedding"):
        load_model(tmp_path / "linear.pt")


def test_unknown_name_is_neither_file_nor_config():
    with pytest.raises(UserError, match=r"^checkpoint not found: runs/missing.pt \(nor is it a model config name: RN50, "):
        load_model("runs/missing.pt")


def test_atomic_save_killed_mid_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint_atomic({"step": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_atomic({"step": 2}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
