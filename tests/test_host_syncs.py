"""The training step never waits on the device: no value is read back (item, tolist, int, float, bool, cpu,
numpy) between logging steps, so a GPU runs ahead of the Python loop. Counted on the CPU by wrapping those
methods while the trainer runs."""
import torch

import trainer.trainer as trainer_module
from dataloader.config import DataConfig
from dataloader.synthetic import SyntheticDataConfig, write_train_set
from dataloader.train_data import build_train_loader
from model import build_model, model_config_by_name
from trainer.config import CheckpointConfig, LoopConfig, TrainerConfig
from trainer.distributed import DistributedContext
from trainer.objectives import ContrastiveObjective
from trainer.run_log import read_log
from utils.config import as_dict

READ_BACKS = ("item", "tolist", "cpu", "numpy", "__int__", "__float__", "__bool__", "__index__")
LOG_EVERY, STEPS = 4, 8


def test_no_value_is_read_back_inside_a_training_step(tmp_path, monkeypatch):
    data = SyntheticDataConfig(root=str(tmp_path / "data"), train_images=STEPS * 4, image_size=32)
    write_train_set(data)
    model_config = model_config_by_name("quickstart")
    loader = build_train_loader(
        DataConfig(train_img_dir=str(data.train_img_dir), train_annotation_file=str(data.train_annotation_file),
                   num_workers=0), image_size=model_config.image_size, mean=model_config.image_mean,
        std=model_config.image_std, context_length=model_config.context_length, batch_size=4, rank=0, world_size=1,
        seed=0, pin_memory=False)
    config = TrainerConfig(output_dir=str(tmp_path / "run"),
                           train=LoopConfig(epochs=1, batch_size=4, precision="fp32", log_every_steps=LOG_EVERY),
                           checkpoint=CheckpointConfig(every_steps=1000, keep_last=1))
    job = trainer_module.TrainingJob(config, build_model(model_config), loader, ContrastiveObjective(),
                                     as_dict(config))

    phase, read_backs = ["set-up"], {"step": [], "log": []}
    for name in READ_BACKS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if phase[0] in read_backs:
                read_backs[phase[0]].append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)

    def in_phase(name, function):
        def wrapped(*args, **kwargs):
            phase[0] = name
            try:
                return function(*args, **kwargs)
            finally:
                phase[0] = "loop"
        return wrapped
    monkeypatch.setattr(trainer_module, "train_step", in_phase("step", trainer_module.train_step))
    monkeypatch.setattr(trainer_module, "log_training", in_phase("log", trainer_module.log_training))

    assert trainer_module.train(job, DistributedContext(0, 0, 1, torch.device("cpu"))) == 0
    assert [record["step"] for record in read_log(tmp_path / "run")] == [4, 8]
    assert read_backs["step"] == []
    assert read_backs["log"]  # the counting sees the reads it must: the loss is read once per logging step
