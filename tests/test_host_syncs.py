"""The training loop never waits on the device between logging steps: no value is read back (item, tolist, int,
float, bool, cpu, numpy) inside a step, nor anywhere in the loop at a step that does not log, on one process and
on two gloo ranks (where the ranks also agree on stop requests). Counted on the CPU by wrapping those methods while
the trainer runs; the loader's own work on host tensors is left out. A signal to one rank still stops every rank,
at the same step."""
import json
import os
import signal

import pytest
import torch
import torch.multiprocessing as mp

import trainer.trainer as trainer_module
from dataloader.config import DataConfig
from dataloader.train.synthetic import SyntheticDataConfig, write_train_set
from dataloader.train.train_data import build_train_loader
from gloo_ranks import free_port, gloo_process_group
from model import build_model, model_config_by_name
from trainer.checkpointing import list_checkpoints
from trainer.config import CheckpointConfig, LoopConfig, TrainerConfig
from trainer.objectives import ContrastiveObjective
from trainer.run_log import read_log
from utils.config import as_dict
from utils.distributed import DistributedContext
from utils.seeding import seed_everything

READ_BACKS = ("item", "tolist", "cpu", "numpy", "__int__", "__float__", "__bool__", "__index__")
LOG_EVERY, STEPS, BATCH = 4, 8, 4


def training_job(data: SyntheticDataConfig, run_dir, rank: int, world_size: int) -> trainer_module.TrainingJob:
    seed_everything(0)
    model_config = model_config_by_name("quickstart")
    loader = build_train_loader(
        DataConfig(train_img_dir=str(data.train_img_dir), train_annotation_file=str(data.train_annotation_file),
                   num_workers=0), image_size=model_config.image_size, mean=model_config.image_mean,
        std=model_config.image_std, context_length=model_config.context_length, batch_size=BATCH, rank=rank,
        world_size=world_size, seed=0, pin_memory=False)
    config = TrainerConfig(output_dir=str(run_dir),
                           train=LoopConfig(epochs=1, batch_size=BATCH, precision="fp32", log_every_steps=LOG_EVERY,
                                            num_threads=1),
                           checkpoint=CheckpointConfig(every_steps=1000, keep_last=1))
    return trainer_module.TrainingJob(config, build_model(model_config), loader, ContrastiveObjective(),
                                      as_dict(config))


def count_read_backs(rank: int, world_size: int, data: SyntheticDataConfig, run_dir) -> dict:
    """Train, recording each read-back inside a training step, and the step the loop was at for each one elsewhere
    in the loop (outside the loader's batch fetching)."""
    torch.set_num_threads(1)
    job = training_job(data, run_dir, rank, world_size)
    phase, session, read_backs = ["set-up"], [], {"in_step": [], "loop_at_step": []}
    with pytest.MonkeyPatch.context() as patch:
        for name in READ_BACKS:
            def counted(self, *args, _original=getattr(torch.Tensor, name), _name=name, **kwargs):
                if phase[0] == "step":
                    read_backs["in_step"].append(_name)
                elif phase[0] == "loop":
                    read_backs["loop_at_step"].append(session[0].state.step)
                return _original(self, *args, **kwargs)
            patch.setattr(torch.Tensor, name, counted)

        def in_phase(name, function, after="loop"):
            def wrapped(*args, **kwargs):
                phase[0] = name
                try:
                    return function(*args, **kwargs)
                finally:
                    phase[0] = after
            return wrapped

        def set_up(*args, _set_up=trainer_module.set_up):
            session.append(_set_up(*args))
            return session[0]

        def fetched_in_data_phase(epoch, first_batch=0, _epoch=job.loader.epoch):
            batches = _epoch(epoch, first_batch)
            while (batch := in_phase("data", next, after="loop")(batches, None)) is not None:
                yield batch

        patch.setattr(trainer_module, "set_up", in_phase("set-up", set_up))
        patch.setattr(trainer_module, "train_step", in_phase("step", trainer_module.train_step))
        patch.setattr(trainer_module, "finish", in_phase("finish", trainer_module.finish, after="finish"))
        patch.setattr(job.loader, "epoch", fetched_in_data_phase)
        assert trainer_module.train(job, DistributedContext(rank, rank, world_size, torch.device("cpu"))) == 0
    return read_backs


def count_on_rank(rank, world_size, port, data, run_dir, out_dir):
    with gloo_process_group(rank, world_size, port):
        read_backs = count_read_backs(rank, world_size, data, run_dir)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(read_backs))


@pytest.mark.parametrize("world_size", [1, 2])
def test_no_value_is_read_back_between_logging_steps(tmp_path, world_size):
    data = SyntheticDataConfig(root=str(tmp_path / "data"), train_images=STEPS * BATCH * world_size, image_size=32)
    write_train_set(data)
    if world_size == 1:
        results = [count_read_backs(0, 1, data, tmp_path / "run")]
    else:
        mp.spawn(count_on_rank, args=(world_size, free_port(), data, tmp_path / "run", tmp_path), nprocs=world_size,
                 join=True)
        results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world_size)]
    assert [record["step"] for record in read_log(tmp_path / "run")] == [4, 8]
    for read_backs in results:
        assert read_backs["in_step"] == []
        assert set(read_backs["loop_at_step"]) == {4, 8}  # the counting sees the reads it must: the logged loss


def stop_on_rank(rank, world_size, port, data, run_dir, out_dir):
    """Rank 1 alone receives SIGTERM during step 2."""
    torch.set_num_threads(1)
    job = training_job(data, run_dir, rank, world_size)

    def step_then_signal(session, micro_batches, _train_step=trainer_module.train_step):
        if rank == 1 and session.state.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return _train_step(session, micro_batches)

    with gloo_process_group(rank, world_size, port), pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module, "train_step", step_then_signal)
        exit_code = trainer_module.train(job, DistributedContext(rank, rank, world_size, torch.device("cpu")))
    (out_dir / f"rank{rank}.json").write_text(json.dumps(exit_code))


def test_a_signal_to_one_rank_stops_every_rank_at_the_next_logging_step(tmp_path):
    data = SyntheticDataConfig(root=str(tmp_path / "data"), train_images=STEPS * BATCH * 2, image_size=32)
    write_train_set(data)
    mp.spawn(stop_on_rank, args=(2, free_port(), data, tmp_path / "run", tmp_path), nprocs=2, join=True)
    assert [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)] == [128 + signal.SIGTERM] * 2
    assert [path.name for path in list_checkpoints(tmp_path / "run")] == [f"step_{LOG_EVERY:08d}.pt"]
    assert [record["step"] for record in read_log(tmp_path / "run")] == [LOG_EVERY]
