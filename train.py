"""Train CLIP on image-caption data.

    python train.py [--config EXPERIMENT.yaml ...] [--train_data PATH] [--train_img_dir DIR]
                    [--train_annotation_file FILE] [--resume auto|PATH] [key.sub=value ...]
    torchrun --nproc_per_node 4 train.py ...      (one process per GPU)

The configuration is trainer/train_config.yaml, dataloader/data_config.yaml and evaluation/eval_config.yaml, then
the experiment YAMLs in order (each only its differences; `include: [file, ...]` in one layers those files first),
then the flags and dotted overrides; the resolved result is saved in the run folder.
"""
import sys

import torch

from jobs.resume import add_resume_flags
from jobs.training import RunConfig, ensure_synthetic_data_on_every_node, read_data, run_defaults, training_model
from trainer.objectives import ContrastiveObjective
from trainer.run_lock import run_folder_lock
from trainer.trainer import TrainingJob, train
from utils.cli import SettingsParser, run_command
from utils.config import as_dict
from utils.distributed import distributed_session, on_every_rank_for_all
from utils.seeding import seed_everything

PARSER = SettingsParser(__doc__, RunConfig, run_defaults())
PARSER.add_setting("--train_data", "data.train_data",
                   help="COCO .json, .csv/.tsv, .jsonl or webdataset shards (data.train_data)")
PARSER.add_setting("--train_img_dir", "data.train_img_dir", help="folder of the training images")
PARSER.add_setting("--train_annotation_file", "data.train_annotation_file", help="COCO-format captions JSON")
add_resume_flags(PARSER)
parse_args, load_run_config = PARSER.parse, PARSER.load


def main(argv=None) -> int:
    return run_command(run_training, parse_args(argv))


def run_training(args) -> int:
    config = load_run_config(args)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    with distributed_session() as ctx, run_folder_lock(config.output_dir, ctx.is_main):
        if config.synthetic_data:
            ensure_synthetic_data_on_every_node(config.synthetic_data, ctx)
        seed_everything(config.train.seed)  # the same initial weights on every rank
        model, start_lines = training_model(config)
        if config.model.init_from and ctx.is_main:
            print(f"weights from {config.model.init_from}")
        if ctx.is_main and start_lines:
            print("\n".join(start_lines))
        if config.model.lock_image and not (config.model.init_from or config.model.init_image_from) and ctx.is_main:
            print("note: model.lock_image without model.init_from: the locked image tower keeps its random weights")
        # every rank reads the data now: one that cannot stops them all, naming itself
        loader, evaluator = on_every_rank_for_all(lambda: read_data(config, model.config, ctx))
        objective = ContrastiveObjective(config.loss.kind, config.train.local_loss, config.loss.duplicate_captions,
                                         config.data.captions_per_image)
        job = TrainingJob(config, model, loader, objective, as_dict(config), evaluator)
        return train(job, ctx, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
