"""Train CLIP on image-caption data.

    python train.py [--config EXPERIMENT.yaml ...] [--train_data PATH] [--train_img_dir DIR]
                    [--train_annotation_file FILE] [--resume auto|PATH] [key.sub=value ...]
    torchrun --nproc_per_node 4 train.py ...      (one process per GPU)

The configuration is trainer/train_config.yaml, dataloader/data_config.yaml and evaluation/eval_config.yaml, then
the experiment YAMLs in order (each only its differences; `include: [file, ...]` in one layers those files first),
then the flags and dotted overrides; the resolved result is saved in the run folder.
"""
import dataclasses
import sys
from pathlib import Path

import torch

from dataloader.config import DataConfig
from dataloader.train.synthetic import SyntheticDataConfig, ensure_synthetic_dataset
from dataloader.train.train_data import build_train_loader
from evaluation.during_training import build_evaluator
from evaluation.eval_config import DEFAULTS_FILE as EVAL_DEFAULTS, EvalConfig
from model import initial_model
from model.config import ModelConfig
from model.grad_checkpointing import set_grad_checkpointing
from model.locking import lock_image_tower, lock_text_tower
from trainer.config import TrainerConfig
from trainer.objectives import ContrastiveObjective
from trainer.run_lock import run_folder_lock
from trainer.trainer import TrainingJob, train
from utils.config import as_dict, load_layered, read_yaml
from utils.cli import ScriptArgumentParser, add_experiment_configs, run_command
from utils.distributed import DistributedContext, distributed_session, on_every_rank_for_all
from utils.errors import UserError
from utils.seeding import seed_everything

ROOT = Path(__file__).resolve().parent
TRAIN_DEFAULTS = ROOT / "trainer" / "train_config.yaml"
DATA_DEFAULTS = ROOT / "dataloader" / "data_config.yaml"
DEFAULT_MODEL = "RN50"


@dataclasses.dataclass
class ModelChoice:
    name: str | None = None  # a named config in model/model_config.yaml (default RN50, or init_from's architecture)
    overrides: dict = dataclasses.field(default_factory=dict)  # ModelConfig fields to change
    init_from: str | None = None  # start from these weights (any file load_model reads); fresh optimiser and schedule
    # locked towers (model.locking; open_clip's groups): no gradient, no optimiser state, except the last N groups
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_image_freeze_bn_stats: bool = False  # the locked groups' batch norms keep their running statistics
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0

    def __post_init__(self):
        for name in ("lock_image_unlocked_groups", "lock_text_unlocked_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be at least 0, got {getattr(self, name)}")


@dataclasses.dataclass
class RunConfig(TrainerConfig):
    model: ModelChoice = dataclasses.field(default_factory=ModelChoice)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    synthetic_data: SyntheticDataConfig | None = None  # generate this dataset first (the no-download quickstart)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)  # evaluation during training


def parse_args(argv):
    parser = ScriptArgumentParser(__doc__)
    add_experiment_configs(parser)
    parser.add_argument("--train_data", help="COCO .json, .csv/.tsv, .jsonl or webdataset shards (data.train_data)")
    parser.add_argument("--train_img_dir", help="folder of the training images (data.train_img_dir)")
    parser.add_argument("--train_annotation_file", help="COCO-format captions JSON (data.train_annotation_file)")
    parser.add_argument("--resume", help="'auto' (latest checkpoint of the run folder, if any) or a checkpoint path")
    parser.add_argument("--resume_allow_changes", action="store_true", default=None,
                        help="resume although settings that change the run differ from the checkpoint's "
                             "(checkpoint.resume_allow_changes)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optimizer.lr=1e-4 train.epochs=5")
    return parser.parse_intermixed_args(argv)  # flags and KEY=VALUE overrides in any order


def load_run_config(args) -> RunConfig:
    defaults = {str(TRAIN_DEFAULTS): read_yaml(TRAIN_DEFAULTS), str(DATA_DEFAULTS): {"data": read_yaml(DATA_DEFAULTS)},
                str(EVAL_DEFAULTS): {"eval": read_yaml(EVAL_DEFAULTS)}}
    flags = {"data.train_data": args.train_data, "data.train_img_dir": args.train_img_dir,
             "data.train_annotation_file": args.train_annotation_file,
             "checkpoint.resume_allow_changes": args.resume_allow_changes}
    return load_layered(RunConfig, defaults, args.config, flags, args.overrides)


def run_model(config: RunConfig):
    """The model the run starts from, fitted to its loss, with its locked towers and train.grad_checkpointing."""
    choice = config.model
    model = initial_model(choice.name, choice.overrides, choice.init_from, DEFAULT_MODEL)
    fit_model_to_loss(model, config.loss.kind)
    if choice.lock_image:
        lock_image_tower(model, choice.lock_image_unlocked_groups, choice.lock_image_freeze_bn_stats)
    if choice.lock_text:
        lock_text_tower(model, choice.lock_text_unlocked_layers)
    set_grad_checkpointing(model, config.train.grad_checkpointing)
    return model


def fit_model_to_loss(model, loss_kind: str) -> None:
    """SigLIP's loss gives the model (fresh or from init_from, e.g. a CLIP-trained tower for LiT) a logit bias;
    CLIP's softmax has no use for one, so a SigLIP model is refused."""
    if loss_kind == "siglip" and not model.config.sigmoid_logits:
        model.add_sigmoid_logits()
    if loss_kind == "clip" and model.config.sigmoid_logits:
        raise UserError("loss.kind=clip does not fit a model with a logit bias (a SigLIP model, or "
                        "model.overrides.sigmoid_logits: true): use loss.kind=siglip")


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
        model = run_model(config)
        if config.model.init_from and ctx.is_main:
            print(f"weights from {config.model.init_from}")
        if config.model.lock_image and not config.model.init_from and ctx.is_main:
            print("note: model.lock_image without model.init_from: the locked image tower keeps its random weights")
        # every rank reads the data now: one that cannot stops them all, naming itself
        loader, evaluator = on_every_rank_for_all(lambda: read_data(config, model.config, ctx))
        objective = ContrastiveObjective(config.loss.kind, config.train.local_loss, config.loss.duplicate_captions,
                                         config.data.captions_per_image)
        job = TrainingJob(config, model, loader, objective, as_dict(config), evaluator)
        return train(job, ctx, resume=args.resume)


def ensure_synthetic_data_on_every_node(config: SyntheticDataConfig, ctx: DistributedContext) -> None:
    """Rank 0 generates the dataset unless it is there; then the first process of each node that does not see it
    (node-local storage) writes that node's own copy. Generation is deterministic, so every copy is the same, and
    on shared storage the second turn finds rank 0's copy and writes nothing."""
    for turn in (ctx.is_main, ctx.local_rank == 0 and not ctx.is_main):
        if on_every_rank_for_all(lambda: turn and ensure_synthetic_dataset(config)):
            print(f"generated the synthetic dataset in {config.root}" + (f" (rank {ctx.rank})" if ctx.rank else ""))


def read_data(config: RunConfig, model_config: ModelConfig, ctx: DistributedContext):
    """The training batches of this rank and the evaluator of the `eval:` section (None without tasks)."""
    loader = build_train_loader(config.data, image_size=model_config.image_size, mean=model_config.image_mean,
                                std=model_config.image_std, context_length=model_config.context_length,
                                batch_size=config.train.batch_size, rank=ctx.rank, world_size=ctx.world_size,
                                seed=config.train.seed, pin_memory=ctx.device.type == "cuda")
    evaluator = build_evaluator(config.eval, model_config, ctx, global_batch=config.train.batch_size * ctx.world_size,
                                channels_last=config.train.channels_last)
    return loader, evaluator


if __name__ == "__main__":
    sys.exit(main())
